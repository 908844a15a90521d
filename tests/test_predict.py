import json
import os

import numpy as np
import pytest

from cellseg import instances, predict, segmenter, tiling


def tiny_output_model(size, weights=None, target="binary"):
    net = segmenter.Segmenter(size, base_filters=4, depth=2, target=target)
    if weights is not None:
        net.unet.set_weights(weights)
    return segmenter.output_model(net), net.unet.get_weights()


@pytest.mark.parametrize("target, channels", [("binary", 1), ("three_class", 3)])
def test_tiled_prediction_equals_whole_padded_frame_prediction(target, channels):
    rng = np.random.default_rng(0)
    image = rng.random((70, 90)).astype(np.float32)  # not a multiple of the tile
    tile, overlap = 96, 64
    tiled_model, weights = tiny_output_model(tile, target=target)
    tiled = tiling.predict_outputs(lambda t: tiled_model.predict_on_batch(t), image, tile, overlap)
    assert tiled.shape == image.shape + (channels,)
    stride, down, across, padding = tiling.tile_layout(70, 90, tile, overlap)
    padded = np.pad(image, padding, mode="symmetric")
    whole_model, _ = tiny_output_model(padded.shape[0], weights, target)
    assert padded.shape[0] == padded.shape[1]
    whole = whole_model.predict_on_batch(padded[None, ..., None])[0]
    margin = overlap // 2
    expected = whole[margin : margin + 70, margin : margin + 90]
    assert np.abs(tiled - expected).max() < 1e-3


@pytest.mark.parametrize("depth", [1, 2])
def test_the_receptive_radius_bounds_what_an_input_pixel_changes(depth):
    import keras

    from cellseg import model

    keras.utils.set_random_seed(depth)
    net = model.build_unet(128, base_filters=4, depth=depth)
    image = np.random.default_rng(depth).random((1, 128, 128, 1)).astype(np.float32)
    before = net.predict_on_batch(image)[0, ..., 0]
    for row, col in ((64, 64), (61, 67)):  # on and off the pooling grid
        poked = image.copy()
        poked[0, row, col, 0] += 1.0
        rows, cols = np.nonzero(np.abs(net.predict_on_batch(poked)[0, ..., 0] - before) > 1e-6)
        reach = max(np.abs(rows - row).max(), np.abs(cols - col).max())
        assert model.receptive_radius(depth) >= reach > model.receptive_radius(depth) // 2


def test_a_whole_frame_equals_the_overlap_tiles_in_the_interior_and_builds_one_model_per_shape():
    image = np.random.default_rng(3).random((150, 170)).astype(np.float32)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="three_class")
    network = segmenter.Network(net)
    tile, overlap = network.layout(150, 170)
    assert (tile, overlap) == ((152, 172), 0)  # the frame, padded to a multiple of 2**depth (4)
    whole = tiling.predict_outputs(network, image, tile, overlap)
    tiled = tiling.predict_outputs(segmenter.output_model(net, 96).predict_on_batch, image, 96, 64)
    radius = 29  # model.receptive_radius(2): beyond it the frame's edge is out of sight
    np.testing.assert_allclose(whole[radius:-radius, radius:-radius], tiled[radius:-radius, radius:-radius],
                               atol=1e-3)
    tiling.predict_outputs(network, image[:100], *network.layout(100, 170))
    tiling.predict_outputs(network, image, tile, overlap)
    assert sorted(network.models) == [(100, 172), (152, 172)]  # the second 150 x 170 frame reused its model
    # Test-time augmentation of an oblong frame: quarter turns need the turned shape too.
    averaged = tiling.predict_outputs(tiling.averaged_over_symmetries(network), image, tile, overlap)
    assert averaged.shape == (150, 170, 3) and (172, 152) in network.models
    np.testing.assert_allclose(averaged.sum(-1), 1.0, rtol=1e-5)


def test_tiles_with_the_derived_overlap_equal_one_pass_over_the_padded_frame():
    image = np.random.default_rng(4).random((150, 170)).astype(np.float32)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="binary")
    network = segmenter.Network(net)
    tile, overlap = network.layout(150, 170, max_pixels=96 * 96)
    assert (tile, overlap) == ((96, 96), 64)
    tiled = tiling.predict_outputs(network, image, tile, overlap)
    _, _, _, padding = tiling.tile_layout(150, 170, tile, overlap)
    padded = np.pad(image, padding, mode="symmetric")
    whole = segmenter.output_model(net, padded.shape).predict_on_batch(padded[None, ..., None])[0]
    np.testing.assert_allclose(tiled, whole[32 : 32 + 150, 32 : 32 + 170], atol=1e-4)


def test_layout_covers_the_frame_and_refuses_bad_overlaps():
    (stride, wide), down, across, ((top, bottom), (left, right)) = tiling.tile_layout(1000, 1300, 256, 64)
    assert stride == wide == 192 and down * stride >= 1000 and across * stride >= 1300
    assert top == left == 32 and top + 1000 + bottom == down * stride + 64
    with pytest.raises(ValueError, match="overlap"):
        tiling.tile_layout(100, 100, 64, 64)
    with pytest.raises(ValueError, match="overlap"):
        tiling.tile_layout(100, 100, 64, 7)


def test_a_large_odd_frame_keeps_its_size():
    image = np.zeros((1000, 1300), np.float32)
    calls = []

    def constant(tiles):
        calls.append(len(tiles))
        return np.full(tiles.shape, 0.25, np.float32)

    result = tiling.predict_outputs(constant, image, 256, 64, batch_size=8)
    assert result.shape == (1000, 1300, 1) and np.all(result == 0.25)
    assert sum(calls) == 6 * 7 and max(calls) == 8


def test_ctc_sequence_gives_challenge_names_and_cells_csv(tiny_model, fluo_dataset, tmp_path):
    import csv

    from cellseg import tiff

    result = predict.run_prediction(str(fluo_dataset / "02"), tiny_model, str(tmp_path), 64, 32,
                                    {"min_size": 0}, overlays=True)
    assert result["frames"] == 4 and result["failed"] == []
    assert result["target"] == "binary" and not result["tuned"] and result["postprocess"]["min_size"] == 0
    names = sorted(os.listdir(tmp_path / "02_RES"))
    assert names == ["mask000.tif", "mask001.tif", "mask002.tif", "mask003.tif", "res_track.txt"]
    from cellseg import ctc

    spans = {label: (first, last) for label, first, last, _ in ctc.read_tracks(tmp_path / "02_RES" / "res_track.txt")}
    for row in csv.DictReader(open(tmp_path / "cells.csv")):  # every cell's label is a track alive in its frame
        first, last = spans[int(row["label"])]
        assert first <= int(row["frame"][1:]) <= last and row["track"]
    assert os.path.exists(tmp_path / "tracks.csv")
    labels = tiff.read(tmp_path / "02_RES" / "mask002.tif")
    assert labels.dtype == np.uint16 and labels.shape == (96, 96)
    assert sorted(os.listdir(tmp_path / "overlays")) == ["lineage.png", "t000.png", "t001.png", "t002.png",
                                                         "t003.png", "trajectories.png"]
    rows = list(csv.DictReader(open(tmp_path / "cells.csv")))
    assert len(rows) == result["cells"]
    with open(tmp_path / "cells.csv") as handle:
        assert handle.readline().strip().split(",") == list(predict.CELL_COLUMNS)


def test_cell_measurements_equal_hand_computed_values():
    labels = np.zeros((20, 30), np.uint16)
    labels[2:6, 3:11] = 4  # 4 x 8 rectangle
    labels[10:19, 20:23] = 9  # 9 x 3 rectangle
    raw = np.zeros((20, 30), np.uint16)
    raw[labels == 4] = 100
    raw[labels == 9] = 40
    rows = {row["label"]: row for row in predict.measure_cells("t000", labels, raw)}
    first, second = rows[4], rows[9]
    assert (first["area"], second["area"]) == (32, 27)
    assert (first["centroid_x"], first["centroid_y"]) == (6.5, 3.5)
    assert (second["centroid_x"], second["centroid_y"]) == (21.0, 14.0)
    assert (first["bbox_x0"], first["bbox_y0"], first["bbox_x1"], first["bbox_y1"]) == (3, 2, 11, 6)
    assert first["mean_intensity"] == 100 and second["mean_intensity"] == 40
    assert first["solidity"] == 1.0 and first["major_axis"] > first["minor_axis"]


def test_a_1000_by_1300_tiff_gets_labels_of_its_size(tiny_model, tmp_path):
    from cellseg import tiff

    frame = tmp_path / "big.tif"
    tiff.write(frame, np.random.default_rng(0).integers(0, 4000, (1000, 1300)).astype(np.uint16))
    result = predict.run_prediction(str(frame), tiny_model, str(tmp_path / "out"), 256, 64, tta=False)
    assert result["frames"] == 1
    assert tiff.read(tmp_path / "out" / "labels" / "big.tif").shape == (1000, 1300)


def test_a_bad_frame_is_named_and_the_others_are_written(tiny_model, fluo_dataset, tmp_path):
    import shutil

    sequence = tmp_path / "01"
    shutil.copytree(fluo_dataset / "01", sequence)
    (sequence / "t002.tif").write_bytes(b"II*\x00 truncated")
    result = predict.run_prediction(str(sequence), tiny_model, str(tmp_path / "out"), 64, 32)
    assert result["frames"] == 3 and len(result["failed"]) == 1 and "t002.tif" in result["failed"][0]
    assert sorted(os.listdir(tmp_path / "out" / "01_RES")) == ["mask000.tif", "mask001.tif", "mask003.tif",
                                                              "res_track.txt"]


def test_a_file_that_is_not_a_cellseg_model_is_refused_by_name(tmp_path):
    import keras

    bogus = tmp_path / "notes.keras"
    bogus.write_text("not a model")
    with pytest.raises(ValueError, match="notes.keras: not a readable .keras file"):
        predict.load_model(str(bogus))
    with pytest.raises(ValueError, match="gone.keras: no such file or folder"):
        predict.load_model(str(tmp_path / "gone.keras"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="folder: a folder that is neither a run folder"):
        predict.load_model(str(tmp_path / "folder"))
    plain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ValueError, match="not a cellseg model"):
        predict.load_model(str(tmp_path / "plain.keras"))


def test_an_export_folder_predicts_like_the_keras_model(tiny_model, tmp_path):
    import keras

    net = keras.models.load_model(tiny_model, compile=False)
    segmenter.output_model(net).export(str(tmp_path / "export"), verbose=False)
    tiles = np.random.default_rng(2).random((3, 32, 32, 1)).astype(np.float32)
    from_export = predict.load_model(str(tmp_path / "export"), 32)
    from_keras = predict.load_model(tiny_model)
    assert from_export.target == from_keras.target == "binary"
    np.testing.assert_allclose(from_export.predict(tiles), from_keras.predict(tiles), atol=1e-5)
    with pytest.raises(ValueError, match="--tile_size=32"):
        predict.load_model(str(tmp_path / "export"), 64)


def test_the_target_and_tuned_thresholds_come_from_the_run_folder(tmp_path):
    import json

    import keras

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="three_class")
    net.compile(optimizer="adam")
    net(np.zeros((1, 32, 32, 1), np.float32))
    net.save(run / "checkpoints" / "best.keras")
    segmenter.output_model(keras.models.load_model(run / "checkpoints" / "best.keras")).export(
        str(run / "export"), verbose=False)
    tuned = {"target": "three_class", "mask_threshold": 0.35, "seed_threshold": 0.8, "min_size": 7,
             "fill_holes": True, "seg": 0.9}
    (run / "postprocess.json").write_text(json.dumps(tuned))
    for path in (run, run / "checkpoints" / "best.keras", run / "export"):
        model = predict.load_model(str(path))
        assert model.target == "three_class" and model.postprocess == tuned
        settings = predict.postprocess_settings(model, {"seed_threshold": 0.6, "min_size": None})
        assert (settings.mask_threshold, settings.seed_threshold, settings.min_size) == (0.35, 0.6, 7)
        assert not settings.seed_peaks
        peaks = predict.postprocess_settings(model, {"seed_threshold": 0.05, "seed_peaks": True})
        assert (peaks.seed_threshold, peaks.seed_peaks, peaks.min_size) == (0.05, True, 7)
        assert model.predict(np.zeros((2, 32, 32, 1), np.float32)).shape == (2, 32, 32, 3)
    (run / "postprocess.json").write_text(json.dumps({**tuned, "target": "distance"}))
    with pytest.raises(ValueError, match="for target distance"):
        predict.load_model(str(run))


def test_an_export_is_not_run_when_it_is_loaded(tmp_path):
    # An export's functions may do anything (here: write a file); loading one must not call them.
    import tensorflow as tf

    marker = tmp_path / "ran"

    class Crafted(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32)])
        def serve(self, tiles):
            tf.io.write_file(str(marker), "ran")
            return tf.concat([tiles, tiles, tiles], axis=-1)

    tf.saved_model.save(Crafted(), str(tmp_path / "export"))
    assert not marker.exists()
    model = predict.load_model(str(tmp_path / "export"), 32)
    assert model.target == "three_class"  # 3 output channels, read from the signature
    assert not marker.exists()


def test_a_frame_holding_nan_is_refused_by_name_and_the_others_are_written(tiny_model, fluo_dataset, tmp_path):
    import shutil

    from cellseg import tiff

    sequence = tmp_path / "01"
    shutil.copytree(fluo_dataset / "01", sequence)
    for index, value in ((1, np.nan), (2, np.inf)):
        frame = tiff.read(sequence / f"t00{index}.tif").astype(np.float32)
        frame[5, 5] = value
        tiff.write(sequence / f"t00{index}.tif", frame)
    result = predict.run_prediction(str(sequence), tiny_model, str(tmp_path / "out"), 64, 32)
    assert result["frames"] == 2 and len(result["failed"]) == 2
    assert all("NaN or infinite" in reason for reason in result["failed"])
    assert sorted(os.listdir(tmp_path / "out" / "01_RES")) == ["mask000.tif", "mask003.tif", "res_track.txt"]


def test_an_output_folder_that_cannot_be_written_is_refused_first(tiny_model, fluo_dataset, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="a_file/out: cannot write there"):
        predict.run_prediction(str(fluo_dataset / "01"), str(tmp_path / "no_model.keras"), str(blocker / "out"))


def test_a_keras_file_carrying_code_is_refused_by_safe_mode(tmp_path):
    import keras

    carrier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda x: x * 2)])
    carrier.save(tmp_path / "carrier.keras")
    with pytest.raises(ValueError, match="carrier.keras: not a cellseg model .*(unsafe|safe_mode)"):
        predict.load_model(str(tmp_path / "carrier.keras"))


def test_frames_stream_in_batches_of_one_size_and_equal_frame_by_frame_segmentation(tiny_model, tmp_path,
                                                                                  monkeypatch):
    from cellseg import tiff

    rng = np.random.default_rng(5)
    shapes = [(40, 56), (40, 56), (36, 36), (40, 56), (40, 56)]
    for index, shape in enumerate(shapes):
        tiff.write(tmp_path / f"f{index}.tif", rng.integers(0, 4000, shape).astype(np.uint16))
    seen = []
    call = segmenter.Network.__call__
    monkeypatch.setattr(segmenter.Network, "__call__",
                        lambda self, tiles: seen.append(tiles.shape) or call(self, tiles))
    done = []
    result = predict.run_prediction(str(tmp_path / "f*.tif"), tiny_model, str(tmp_path / "out"), tta=False,
                                    overrides={"min_size": 0}, progress=lambda i, n: done.append((i, n)))
    assert result["frames"] == 5 and done[-1] == (5, 5)
    assert seen == [(2, 40, 56, 1), (1, 36, 36, 1), (2, 40, 56, 1)]  # whole frames, one size per call
    model = predict.load_model(tiny_model)
    settings = predict.postprocess_settings(model, {"min_size": 0})
    for index in range(5):
        _, alone = predict.segment(tiff.read(tmp_path / f"f{index}.tif"), model, settings)
        np.testing.assert_array_equal(tiff.read(tmp_path / "out" / "labels" / f"f{index}.tif"), alone)


def earlier_result(out, frames=5):
    """A result folder as an earlier run left it, every file recognisable."""
    from cellseg import ctc, tiff

    (out / "02_RES").mkdir(parents=True)
    (out / "overlays").mkdir()
    for index in range(frames):
        tiff.write_labels(out / "02_RES" / ctc.result_name(index), np.full((96, 96), 7, np.uint16))
    (out / "02_RES" / ctc.TRACKS).write_text(f"7 0 {frames - 1} 0\n")
    for name in ("cells.csv", "tracks.csv", "overlays/t000.png"):
        (out / name).write_text("earlier")
    return {str(path.relative_to(out)): path.read_bytes() for path in out.rglob("*") if path.is_file()}


def files_of(out):
    return {str(path.relative_to(out)): path.read_bytes() for path in out.rglob("*") if path.is_file()}


def test_an_interrupted_rerun_leaves_the_earlier_result_as_it_was(tiny_model, fluo_dataset, tmp_path, monkeypatch):
    from cellseg import tiff

    out = tmp_path / "out"
    earlier = earlier_result(out)
    write, written = tiff.write_labels, []

    def interrupted_after_two_frames(path, labels):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        write(path, labels)

    monkeypatch.setattr(tiff, "write_labels", interrupted_after_two_frames)
    with pytest.raises(KeyboardInterrupt):
        predict.run_prediction(str(fluo_dataset / "02"), tiny_model, str(out), 64, 32, tta=False)
    assert len(written) == 2  # the new masks were being written, elsewhere
    assert files_of(out) == earlier and sorted(os.listdir(out)) == ["02_RES", "cells.csv", "overlays", "tracks.csv"]


def test_a_full_disk_is_one_line_naming_the_file_and_the_earlier_result_stays(tiny_model, fluo_dataset, tmp_path,
                                                                             monkeypatch):
    import errno

    from cellseg import tiff

    out = tmp_path / "out"
    earlier = earlier_result(out)
    write = tiff.write_labels

    def full_at_the_third_frame(path, labels):
        if str(path).endswith("mask002.tif"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, labels)

    monkeypatch.setattr(tiff, "write_labels", full_at_the_third_frame)
    with pytest.raises(ValueError) as refused:
        predict.run_prediction(str(fluo_dataset / "02"), tiny_model, str(out), 64, 32, tta=False)
    assert str(refused.value) == (f"{out / '02_RES' / 'mask002.tif'}: cannot write (No space left on device); "
                                  f"nothing written, {out} is as it was")
    assert files_of(out) == earlier and sorted(os.listdir(out)) == ["02_RES", "cells.csv", "overlays", "tracks.csv"]


def test_a_completed_rerun_replaces_the_earlier_result_whole(tiny_model, fluo_dataset, tmp_path):
    out = tmp_path / "out"
    earlier_result(out)  # five masks, tracks and overlays; the rerun has four frames, no tracking, no overlays
    (out / "01_RES").mkdir()
    (out / "01_RES" / "mask000.tif").write_text("another sequence's")
    result = predict.run_prediction(str(fluo_dataset / "02"), tiny_model, str(out), 64, 32, tta=False, track=False)
    assert result["frames"] == 4
    assert sorted(os.listdir(out)) == ["01_RES", "02_RES", "cells.csv"]
    assert sorted(os.listdir(out / "02_RES")) == ["mask000.tif", "mask001.tif", "mask002.tif", "mask003.tif"]
    assert (out / "cells.csv").read_text().startswith("frame,label") and \
        (out / "01_RES" / "mask000.tif").read_text() == "another sequence's"


@pytest.mark.parametrize("content, says", [
    (b"", "empty"),
    (b"\n", "empty"),
    (b'{"target": "binary",', "not JSON (Expecting property name enclosed in double quotes: line 1 column 21"),
    (b"[0.5]", "expected a JSON object of thresholds, got list"),
    (b'{"target": "binary", "mask_threshold": 2}', "binary mask_threshold must be in (0, 1), got 2"),
])
def test_a_broken_postprocess_json_is_refused_by_name(tiny_model, tmp_path, content, says):
    import shutil

    from cellseg import run_folder

    (tmp_path / "checkpoints").mkdir()
    shutil.copy(tiny_model, tmp_path / run_folder.BEST)
    (tmp_path / run_folder.POSTPROCESS).write_bytes(content)
    with pytest.raises(ValueError) as refused:
        predict.load_model(str(tmp_path))
    assert str(refused.value).startswith(f"{tmp_path / run_folder.POSTPROCESS}: {says}")


def test_a_run_that_segments_no_frame_replaces_nothing(tiny_model, tmp_path):
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "a.tif").write_text("earlier")
    (tmp_path / "a.tif").write_bytes(b"II*\x00 truncated")
    with pytest.raises(ValueError, match=r"a.tif: no frame could be segmented \(.*a.tif.*\); nothing written"):
        predict.run_prediction(str(tmp_path / "a.tif"), tiny_model, str(out), tta=False)
    assert files_of(out) == {"labels/a.tif": b"earlier"}


def test_a_run_without_tuning_takes_its_planned_minimum_size(tiny_model, tmp_path):
    import shutil

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_model, run / "checkpoints" / "best.keras")
    assert predict.postprocess_settings(predict.load_model(str(run))).min_size == instances.Postprocess().min_size
    (run / "plan.json").write_text(json.dumps({"settings": {"min_size": {"value": 37, "reason": "r", "given": False}}}))
    assert predict.postprocess_settings(predict.load_model(str(run))).min_size == 37
    tuned = {"target": "binary", "mask_threshold": 0.4, "seed_threshold": 1.0, "min_size": 5}
    (run / "postprocess.json").write_text(json.dumps(tuned))
    assert predict.postprocess_settings(predict.load_model(str(run))).min_size == 5  # tuning wins
