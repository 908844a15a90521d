"""Time-lapses as one (T, Y, X) TIFF stack: read, segmented and tracked as a CTC sequence folder is."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from cellseg import ctc, predict, stacks, tiff, tracking

FRAMES = (np.arange(4 * 12 * 10) * 37 % 65521).astype(np.uint16).reshape(4, 12, 10)


def write_pages_one_by_one(path, frames):
    with tifffile.TiffWriter(path) as writer:
        for frame in frames:
            writer.write(frame, contiguous=False)


@pytest.mark.parametrize("kind, write, pixel_size", [
    ("ImageJ hyperstack", lambda p, f: stacks.write(p, f, pixel_size=0.5), 0.5),
    ("OME-TIFF in nm", lambda p, f: tifffile.imwrite(p, f, ome=True, metadata={
        "axes": "TYX", "PhysicalSizeX": 325.0, "PhysicalSizeXUnit": "nm"}), 0.325),
    ("plain multi-page", lambda p, f: tifffile.imwrite(p, f, photometric="minisblack"), None),
    ("pages saved one by one", write_pages_one_by_one, None),
])
def test_a_stack_reads_frame_by_frame_with_its_pixel_size(tmp_path, kind, write, pixel_size):
    path = str(tmp_path / ("movie.ome.tif" if "OME" in kind else "movie.tif"))
    write(path, FRAMES)
    assert stacks.is_stack(path) and stacks.stem(path) == "movie"
    with stacks.Stack(path) as stack:
        assert len(stack) == 4 and stack.shape == (12, 10) and stack.names() == ["t000", "t001", "t002", "t003"]
        for index, frame in enumerate(FRAMES):
            read = stack.frame(index)
            assert read.dtype == np.uint16
            np.testing.assert_array_equal(read, frame)
        assert stack.pixel_size == (pytest.approx(pixel_size) if pixel_size else None)


def test_a_single_page_or_a_folder_is_not_a_stack(tmp_path):
    tiff.write(tmp_path / "one.tif", FRAMES[0])
    assert not stacks.is_stack(str(tmp_path / "one.tif")) and not stacks.is_stack(str(tmp_path))


@pytest.mark.parametrize("kind, write", [
    ("tifffile", lambda p, f: tifffile.imwrite(p, f)),
    ("ImageJ", lambda p, f: tifffile.imwrite(p, f, imagej=True)),
    ("OME-TIFF", lambda p, f: tifffile.imwrite(p, f, ome=True)),
])
def test_a_2d_image_is_not_a_stack_whatever_its_metadata(tmp_path, kind, write):
    """ImageJ's images=1 and OME's SizeT=1 are written for every 2-D image, so they cannot mark a stack of
    one frame (an ImageJ or OME file of one frame is a 2-D image, byte for byte)."""
    path = str(tmp_path / ("one.ome.tif" if kind == "OME-TIFF" else "one.tif"))
    write(path, FRAMES[0])
    assert not stacks.is_stack(path)


@pytest.mark.parametrize("kind, write, pixel_size", [
    ("tifffile's own metadata", lambda p, f: tifffile.imwrite(p, f), None),
    ("stacks.write", lambda p, f: stacks.write(p, f, pixel_size=0.5), 0.5),
])
def test_one_frame_saved_as_a_stack_is_a_stack_of_one_frame(tmp_path, kind, write, pixel_size):
    path = str(tmp_path / "movie.tif")
    write(path, FRAMES[:1])
    assert stacks.is_stack(path)
    with stacks.Stack(path) as stack:
        assert len(stack) == 1 and stack.shape == (12, 10) and stack.names() == ["t000"]
        np.testing.assert_array_equal(stack.frame(0), FRAMES[0])
        assert stack.pixel_size == (pytest.approx(pixel_size) if pixel_size else None)


@pytest.mark.parametrize("case, array, options, message", [
    ("RGB", np.zeros((3, 8, 8, 3), np.uint8), {"photometric": "rgb"}, "an RGB stack"),
    ("time and channels", np.zeros((3, 2, 8, 8), np.uint16), {"imagej": True, "metadata": {"axes": "TCYX"}},
     "a 4-D stack"),
    ("channels only", np.zeros((2, 8, 8), np.uint16), {"imagej": True, "metadata": {"axes": "CYX"}},
     "2 channels (CYX (2, 8, 8)); expected one grey channel over time (T, Y, X)"),
])
def test_a_stack_that_is_not_grey_frames_over_time_is_refused_in_one_line(tmp_path, case, array, options, message):
    path = str(tmp_path / "bad.tif")
    tifffile.imwrite(path, array, **options)
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        stacks.Stack(path)
    assert str(caught.value).startswith(path) and "\n" not in str(caught.value)


def test_a_stack_is_segmented_and_tracked_as_its_sequence_folder(tiny_model, fluo_dataset, tmp_path):
    frames = [tiff.read(path) for path in ctc.sequence_frames(str(fluo_dataset / "02"))]
    movie = str(tmp_path / "movie.tif")
    stacks.write(movie, np.stack(frames), pixel_size=0.4)
    settings = {"min_size": 0, "mask_threshold": 0.4, "seed_threshold": 0.3}
    from_folder = predict.run_prediction(str(fluo_dataset / "02"), tiny_model, str(tmp_path / "folder"),
                                         overrides=settings, pixel_size=0.4)
    from_stack = predict.run_prediction(movie, tiny_model, str(tmp_path / "stack"), overrides=settings)
    assert from_stack["frames"] == 4 and from_stack["tracking"] == from_folder["tracking"]
    assert from_folder["cells"] > 0 and from_stack["cells"] == from_folder["cells"]
    assert sorted(os.listdir(tmp_path / "stack" / "movie_RES")) == sorted(os.listdir(tmp_path / "folder" / "02_RES"))
    for name in os.listdir(tmp_path / "folder" / "02_RES"):
        if name.endswith(".tif"):
            np.testing.assert_array_equal(tiff.read(tmp_path / "stack" / "movie_RES" / name),
                                          tiff.read(tmp_path / "folder" / "02_RES" / name))
    assert ctc.read_tracks(tmp_path / "stack" / "movie_RES" / "res_track.txt") == \
        ctc.read_tracks(tmp_path / "folder" / "02_RES" / "res_track.txt")
    # The stack's pixel size (0.4 um, from its metadata) gives the measurements their unit, as the flag did.
    assert open(tmp_path / "stack" / "tracks.csv").read() == open(tmp_path / "folder" / "tracks.csv").read()
    assert "path_length_um" in next(csv.reader(open(tmp_path / "stack" / "tracks.csv")))


def test_a_one_frame_stack_is_segmented_and_tracked_as_a_sequence_of_one_frame(tiny_model, fluo_dataset, tmp_path):
    frame = tiff.read(ctc.sequence_frames(str(fluo_dataset / "02"))[0])
    movie = str(tmp_path / "movie.tif")
    tifffile.imwrite(movie, frame[None])
    settings = {"min_size": 0, "mask_threshold": 0.4, "seed_threshold": 0.3}
    result = predict.run_prediction(movie, tiny_model, str(tmp_path / "out"), overrides=settings)
    assert result["frames"] == 1 and result["tracking"] == {"tracks": result["cells"], "divisions": 0}
    assert sorted(os.listdir(tmp_path / "out")) == ["cells.csv", "movie_RES", "tracks.csv"]
    assert sorted(os.listdir(tmp_path / "out" / "movie_RES")) == ["mask000.tif", "res_track.txt"]
    mask = tiff.read(tmp_path / "out" / "movie_RES" / "mask000.tif")
    assert ctc.read_tracks(tmp_path / "out" / "movie_RES" / "res_track.txt") == \
        [(int(label), 0, 0, 0) for label in np.unique(mask[mask > 0])]


def test_the_track_command_tracks_a_one_frame_stack_of_labels_into_res_beside_it(tmp_path):
    labels = np.zeros((1, 12, 10), np.uint16)
    labels[0, 1:4, 1:4], labels[0, 6:10, 5:9] = 5, 9
    stacks.write(str(tmp_path / "labels.tif"), labels)
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.track", f"--input={tmp_path / 'labels.tif'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"tracked 1 frame(s): 2 cell track(s), 0 division(s); res_track.txt and tracks.csv in " \
           f"{tmp_path / 'labels_RES'}" in done.stdout
    assert ctc.read_tracks(tmp_path / "labels_RES" / "res_track.txt") == [(1, 0, 0, 0), (2, 0, 0, 0)]
    relabelled = tiff.read(tmp_path / "labels_RES" / "mask000.tif")
    assert set(np.unique(relabelled)) == {0, 1, 2} and (relabelled > 0).sum() == (labels > 0).sum()


def test_the_track_command_tracks_a_stack_of_labels_into_res_beside_it(fluo_dataset, tmp_path):
    truth = sorted(ctc.masks_by_index(str(fluo_dataset / "02_GT" / "TRA")).items())
    stacks.write(str(tmp_path / "labels.tif"), np.stack([tiff.read(path) for _, path in truth]).astype(np.uint16))
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.track", f"--input={tmp_path / 'labels.tif'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"res_track.txt and tracks.csv in {tmp_path / 'labels_RES'}" in done.stdout
    tracking.track_folder(str(fluo_dataset / "02_GT" / "TRA"), str(tmp_path / "folder"))
    assert ctc.read_tracks(tmp_path / "labels_RES" / "res_track.txt") == \
        ctc.read_tracks(tmp_path / "folder" / "res_track.txt")
    for index, _ in truth:
        np.testing.assert_array_equal(tiff.read(tmp_path / "labels_RES" / ctc.result_name(index)),
                                      tiff.read(tmp_path / "folder" / ctc.result_name(index)))
    bad = tmp_path / "rgb.tif"
    tifffile.imwrite(bad, np.zeros((3, 8, 8, 3), np.uint8), photometric="rgb")
    refused = subprocess.run([sys.executable, "-m", "cellseg.cli.track", f"--input={bad}"], capture_output=True,
                             text=True)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith(f"cellseg-track: {bad}: an RGB stack")


def test_a_stack_and_its_masks_are_summarised_and_converted_as_sequence_01(fluo_dataset, tmp_path):
    frames = [tiff.read(path) for path in ctc.sequence_frames(str(fluo_dataset / "02"))]
    masks = [tiff.read(path) for _, path in sorted(ctc.masks_by_index(str(fluo_dataset / "02_GT" / "TRA")).items())]
    stacks.write(str(tmp_path / "movie.tif"), np.stack(frames))
    stacks.write(str(tmp_path / "masks.tif"), np.stack(masks).astype(np.uint16))
    folder = stacks.unpack(str(tmp_path / "movie.tif"), str(tmp_path / "masks.tif"), str(tmp_path / "unpacked"))
    assert folder == str(tmp_path / "unpacked" / "movie")
    for index, (frame, mask) in enumerate(zip(frames, masks)):
        np.testing.assert_array_equal(tiff.read(os.path.join(folder, "01", ctc.frame_name(index))), frame)
        np.testing.assert_array_equal(tiff.read(os.path.join(folder, "01_GT", "SEG", ctc.mask_name(index))), mask)
    command = [sys.executable, "-m", "cellseg.cli.summary", f"--input_dir={tmp_path / 'movie.tif'}",
               f"--masks={tmp_path / 'masks.tif'}"]
    shown = subprocess.run(command, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"movie  ({tmp_path / 'movie.tif'})" in shown.stdout and "01 (4 frames)" in shown.stdout
    assert "with gold truth      4  (01_GT/SEG)" in shown.stdout
    records = tmp_path / "records"
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.convert", f"--input_dir={tmp_path / 'movie.tif'}",
                           f"--masks={tmp_path / 'masks.tif'}", f"--output_dir={records}", "--val_fraction=0.5"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    description = json.loads((records / "dataset.json").read_text())
    assert description["counts"]["train"] + description["counts"]["val"] == 4
    assert description["frame_sizes"] == [[96, 96]]
    short = tmp_path / "short.tif"
    stacks.write(str(short), np.stack(masks[:3]).astype(np.uint16))
    refused = subprocess.run([sys.executable, "-m", "cellseg.cli.convert", f"--input_dir={tmp_path / 'movie.tif'}",
                              f"--masks={short}", f"--output_dir={tmp_path / 'other'}"], capture_output=True, text=True)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == \
        f"cellseg-convert: {short}: 3 masks of 96 x 96 for 4 frames of 96 x 96 in {tmp_path / 'movie.tif'}"
