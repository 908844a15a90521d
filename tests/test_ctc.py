import os

import pytest

from cellseg import ctc


def touch(root, *relative):
    for path in relative:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        open(full, "wb").close()


def test_discovers_synthetic_dataset_with_gold_subset_and_silver_everywhere(fluo_dataset):
    layout = ctc.discover(fluo_dataset)
    assert layout.sequences == ["01", "02"]
    assert [(f.sequence, f.index) for f in layout.frames] == [(s, t) for s in ("01", "02") for t in range(4)]
    assert all(f.dataset == "Fluo-N2DH-SYNTH" for f in layout.frames)
    assert [f.index for f in layout.frames if f.gold] == [0, 3, 0, 3]
    assert all(f.silver and os.path.exists(f.silver) for f in layout.frames)
    frame = layout.frames[0]
    assert frame.image == os.path.join(str(fluo_dataset), "01", "t000.tif")
    assert frame.gold == os.path.join(str(fluo_dataset), "01_GT", "SEG", "man_seg000.tif")
    assert frame.key == "Fluo-N2DH-SYNTH/01/t0000"
    assert layout.orphans == []


def test_truth_policy_says_which_mask_and_kind(tmp_path):
    touch(tmp_path, "01/t000.tif", "01/t001.tif", "01/t002.tif",
          "01_GT/SEG/man_seg000.tif", "01_ST/SEG/man_seg000.tif", "01_ST/SEG/man_seg001.tif")
    both, silver_only, none = ctc.discover(tmp_path).frames
    assert both.truth("gold_then_silver") == (both.gold, "gold")
    assert both.truth("silver") == (both.silver, "silver")
    assert silver_only.truth("gold_then_silver") == (silver_only.silver, "silver")
    assert silver_only.truth("gold") == (None, None)
    assert none.truth() == (None, None)
    with pytest.raises(ValueError, match="unknown truth policy"):
        both.truth("bronze")


def test_four_digit_frames_and_unrelated_files(tmp_path):
    touch(tmp_path, "01/t0000.tif", "01/t1000.tif", "01_GT/SEG/man_seg1000.tif",
          "01_GT/TRA/man_track0000.tif", "01_GT/TRA/man_track.txt", "01_RES/mask0000.tif",
          "README.txt", "01/notes.txt", "01/thumb.png", "02_GT/SEG/man_seg_000_001.tif")
    layout = ctc.discover(tmp_path)
    assert [f.index for f in layout.frames] == [0, 1000]
    assert layout.frames[1].gold.endswith("man_seg1000.tif")
    assert layout.frames[0].gold is None and layout.frames[0].silver is None
    assert layout.orphans == []


def test_masks_without_frames_are_reported(tmp_path):
    touch(tmp_path, "01/t000.tif", "01_ST/SEG/man_seg000.tif", "01_ST/SEG/man_seg005.tif")
    layout = ctc.discover(tmp_path)
    assert len(layout.frames) == 1
    assert [o.path for o in layout.orphans] == [os.path.join(str(tmp_path), "01_ST", "SEG", "man_seg005.tif")]
    assert "without frame 01/t005.tif" in layout.orphans[0].reason


def test_sequences_restrict_discovery(tmp_path):
    touch(tmp_path, "01/t000.tif", "02/t000.tif", "02_ST/SEG/man_seg000.tif")
    assert [f.sequence for f in ctc.discover(tmp_path, sequences=["02"]).frames] == ["02"]
    with pytest.raises(ctc.LayoutError, match="no frames for sequence"):
        ctc.discover(tmp_path, sequences=["02", "03"])


@pytest.mark.parametrize("files", [[], ["images/img_000.tif", "masks/img_000.tif"], ["t000.tif"], ["01/frame0.tif"]])
def test_non_ctc_folder_gets_one_clear_error(tmp_path, files):
    touch(tmp_path, *files)
    with pytest.raises(ctc.LayoutError) as error:
        ctc.discover(tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and "expected sequence folders such as 01/" in message
    assert "\n" not in message


def test_missing_folder_is_a_layout_error(tmp_path):
    with pytest.raises(ctc.LayoutError, match="no such directory"):
        ctc.discover(tmp_path / "absent")


def test_parse_layout_keeps_remote_urls():
    frames, orphans = ctc.parse_layout("gs://bucket/PhC-C2DL-PSC/", ["01/t000.tif", "01_ST/SEG/man_seg000.tif"])
    assert frames[0].dataset == "PhC-C2DL-PSC"
    assert frames[0].image == "gs://bucket/PhC-C2DL-PSC/01/t000.tif"
    assert frames[0].silver == "gs://bucket/PhC-C2DL-PSC/01_ST/SEG/man_seg000.tif"
    assert orphans == []


def test_result_path_follows_challenge_naming(tmp_path):
    assert ctc.result_path(tmp_path, "02", 7) == os.path.join(str(tmp_path), "02_RES", "mask007.tif")
    assert ctc.result_path(tmp_path, "01", 12, digits=4).endswith("mask0012.tif")


@pytest.mark.parametrize("content, says", [
    (b"1 0 a 0\n", ":1: expected four non-negative integers 'label first last parent', got '1 0 a 0'"),
    (b"1 0 5\n", ":1: expected four non-negative integers"),
    (b"1 0 -5 0\n", ":1: expected four non-negative integers"),
    (b"1 0 5 0\n\n", ":2: expected four non-negative integers 'label first last parent', got ''"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", ": not a text file"),
    (b"1 0 5 0\n2 6 7 9\n", ":2: track 2's parent 9 is not a track in this file"),
    (b"1 5 2 0\n", ":1: track 1 ends (frame 2) before it begins (frame 5)"),
    (b"1 0 5 0\n1 6 7 0\n", ":2: track 1 is listed twice (also on line 1)"),
    (b"0 0 5 0\n", ":1: label 0 is the background, not a track"),
    (b"1 0 5 0\n2 3 7 1\n", ":2: track 2 begins (frame 3) before its parent 1 ends (frame 5)"),
    (b"1 0 5 0\n2 6 7 2\n", ":2: track 2 is its own parent"),
    (b"1 0 5 0\n2\t6\t7\t1\n", ":2: mixes tabs and spaces; separate the fields as on line 1"),
    (b"1 0 5 0\n2 6 9 1\n", ":2: track 2 runs to frame 9, past the last frame (7)"),
])
def test_a_malformed_track_file_is_refused_naming_the_file_line_and_fault(tmp_path, content, says):
    path = tmp_path / "res_track.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as refused:
        ctc.read_tracks(path, last_frame=7)
    assert str(refused.value).startswith(f"{path}{says}")


def test_a_track_file_that_is_a_folder_or_missing_is_refused_by_name(tmp_path):
    (tmp_path / "res_track.txt").mkdir()
    with pytest.raises(ValueError, match=r"res_track.txt: cannot read it \(Is a directory\)"):
        ctc.read_tracks(tmp_path / "res_track.txt")
    with pytest.raises(ValueError, match=r"man_track.txt: cannot read it \(No such file or directory\)"):
        ctc.read_tracks(tmp_path / "man_track.txt")


def test_a_track_file_the_challenge_accepts_is_read_as_written(tmp_path):
    rows = [(1, 0, 3, 0), (2, 4, 7, 1), (3, 4, 5, 1), (4, 7, 7, 3)]
    ctc.write_tracks(tmp_path / "res_track.txt", rows)
    assert ctc.read_tracks(tmp_path / "res_track.txt", last_frame=7) == rows
    (tmp_path / "tabs.txt").write_text("1\t0\t3\t0\r\n2\t4\t7\t1\r\n")  # the challenge's files use either
    assert ctc.read_tracks(tmp_path / "tabs.txt") == rows[:2]
    (tmp_path / "none.txt").write_text("")  # masks without a cell
    assert ctc.read_tracks(tmp_path / "none.txt") == []
