import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cellseg import ctc, synthetic, tiff


def read_all(root):
    return {
        os.path.relpath(os.path.join(folder, name), root): np.array(Image.open(os.path.join(folder, name)))
        for folder, _, names in os.walk(root)
        for name in names
        if name.endswith(".tif")
    }


def test_same_seed_same_dataset_other_seed_other_dataset(tmp_path):
    config = synthetic.Config(kind="phc", sequences=1, frames=3, height=64, width=80, seed=7)
    synthetic.write_dataset(tmp_path / "a", config)
    synthetic.write_dataset(tmp_path / "b", config)
    synthetic.write_dataset(tmp_path / "c", synthetic.Config(kind="phc", sequences=1, frames=3, height=64, width=80, seed=8))
    a, b, c = read_all(tmp_path / "a"), read_all(tmp_path / "b"), read_all(tmp_path / "c")
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["01/t000.tif"], c["01/t000.tif"])
    assert (tmp_path / "a/01_GT/TRA/man_track.txt").read_text() == (tmp_path / "b/01_GT/TRA/man_track.txt").read_text()


@pytest.mark.parametrize("kind, dtype, fraction", [("fluo", np.uint16, (0.10, 0.25)), ("phc", np.uint8, (0.04, 0.11))])
def test_kinds_look_like_their_microscopy(tmp_path, kind, dtype, fraction):
    config = synthetic.Config(kind=kind, sequences=1, frames=4, height=256, width=256, seed=1)
    layout = synthetic.write_dataset(tmp_path, config)
    for frame in layout.frames:
        image, labels = tiff.read(frame.image), tiff.read(os.path.join(tmp_path, "01_GT/TRA", f"man_track{frame.index:03d}.tif"))
        assert image.dtype == dtype and labels.dtype == np.uint16 and image.shape == (256, 256)
        assert fraction[0] <= np.count_nonzero(labels) / labels.size <= fraction[1]
        ring = ndimage.binary_dilation(labels > 0, iterations=3) & ~ndimage.binary_dilation(labels > 0)
        far = ~ndimage.binary_dilation(labels > 0, iterations=8)
        if kind == "fluo":  # bright nuclei on a dark background, using more than 8 bits
            assert image[labels > 0].mean() > image[far].mean() + 5 * image[far].std()
            assert image.max() > 255
        else:  # the bright halo around phase-contrast cells
            assert image[ring].mean() > image[far].mean() + 10
        # Some cells touch: two different labels side by side.
        horizontal = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
        vertical = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
        assert horizontal.any() or vertical.any()


def test_tracks_are_consistent_with_tracking_masks(tmp_path):
    config = synthetic.Config(kind="phc", sequences=1, frames=12, height=128, width=128, seed=2)
    synthetic.write_dataset(tmp_path, config)
    rows = [tuple(map(int, line.split())) for line in (tmp_path / "01_GT/TRA/man_track.txt").read_text().splitlines()]
    alive = {t: {track for track, first, last, _ in rows if first <= t <= last} for t in range(12)}
    ids = {track for track, *_ in rows}
    for t in range(12):
        labels = tiff.read(tmp_path / f"01_GT/TRA/man_track{t:03d}.tif")
        present = set(np.unique(labels)) - {0}
        assert present <= alive[t]
        assert len(present) >= 0.8 * len(alive[t])  # a few may sit off-frame or be hidden by neighbours
    assert any(parent for *_, parent in rows), "some cells divide"
    for track, first, last, parent in rows:
        assert first <= last
        if parent:
            assert parent in ids and next(r for r in rows if r[0] == parent)[2] == first - 1


def test_silver_truth_is_close_to_gold_but_not_equal(tmp_path):
    layout = synthetic.write_dataset(tmp_path, synthetic.Config(kind="fluo", sequences=1, frames=1, height=128, width=128))
    gold, silver = tiff.read(layout.frames[0].gold) > 0, tiff.read(layout.frames[0].silver) > 0
    iou = (gold & silver).sum() / (gold | silver).sum()
    assert 0.8 < iou < 1.0


def test_gold_on_every_nth_frame_and_four_digit_names_for_long_sequences(tmp_path):
    layout = synthetic.write_dataset(tmp_path, synthetic.Config(kind="phc", sequences=1, frames=7, height=32, width=32, gold_every=2))
    assert [f.index for f in layout.frames if f.gold] == [0, 2, 4, 6]
    assert all(f.silver for f in layout.frames)
    with pytest.raises(ValueError, match="kind"):
        synthetic.Config(kind="brightfield")


@pytest.mark.parametrize("kind", ["fluo", "phc"])
def test_cli_writes_twenty_frames_that_ctc_discovers(tmp_path, kind):
    output = tmp_path / kind
    result = subprocess.run(
        [sys.executable, "-m", "cellseg.cli.synth", f"--kind={kind}", f"--output_dir={output}",
         "--sequences=2", "--frames=10", "--height=256", "--width=256"],
        capture_output=True, text=True, check=True,
    )
    layout = ctc.discover(output)
    assert len(layout.frames) == 20
    assert all(f.silver for f in layout.frames)
    assert sum(1 for f in layout.frames if f.gold) >= 4
    assert "frames               20" in result.stdout and "with gold truth      8" in result.stdout


def test_cli_refuses_to_overwrite_without_flag(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = subprocess.run(
        [sys.executable, "-m", "cellseg.cli.synth", f"--output_dir={tmp_path}", "--overwrite"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "not a CTC dataset folder; refusing to delete it" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"
