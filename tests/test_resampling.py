"""Frames at the plan's input scale: in the records as read for training, and in prediction, checked against
interpolation and nearest-pixel indexing computed by hand."""

import json
import shutil

import numpy as np

from cellseg import data, records as records_lib, predict, resampling, tiff


def test_bilinear_resampling_follows_a_ramp_and_leaves_scale_one_alone():
    ramp = np.tile(np.arange(20, dtype=np.float32), (6, 1))  # rows 0..19 along x
    doubled = resampling.image(ramp, 2.0)
    assert doubled.shape == (12, 40) and doubled.dtype == np.float32
    # half-pixel centres: output column j samples input x = (j + 0.5) / 2 - 0.5, clamped at the edges
    expected = np.clip((np.arange(40) + 0.5) / 2 - 0.5, 0, 19)
    np.testing.assert_allclose(doubled[3], expected, atol=1e-5)
    assert resampling.image(ramp, 1.0) is ramp
    assert resampling.size_of(7, 5, 1.333) == (9, 7) and resampling.size_of(1, 1, 0.25) == (1, 1)


def test_labels_go_back_to_the_frame_by_the_nearest_pixel():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 50, (9, 7)).astype(np.uint16)
    back = resampling.labels(small, (12, 10))
    assert back.dtype == np.uint16 and back.shape == (12, 10)
    rows = np.minimum(((np.arange(12) + 0.5) * 9 / 12).astype(int), 8)  # the pixel whose area holds the centre
    cols = np.minimum(((np.arange(10) + 0.5) * 7 / 10).astype(int), 6)
    np.testing.assert_array_equal(back, small[rows][:, cols])
    labels = rng.integers(0, 9, (6, 5)).astype(np.int32)
    np.testing.assert_array_equal(resampling.labels(resampling.labels(labels, (12, 10)), (6, 5)), labels)


def test_records_read_at_a_scale_give_larger_frames_with_the_same_cells(fluo_records):
    plain, doubled = records_lib.open_records(fluo_records), records_lib.open_records(fluo_records, 2.0)
    assert doubled.frame_sizes == [(2 * h, 2 * w) for h, w in plain.description["frame_sizes"]]
    for (image, labels), (big_image, big_labels) in zip(records_lib.validation_frames(plain), records_lib.validation_frames(doubled)):
        assert big_image.shape == (2 * image.shape[0], 2 * image.shape[1])
        np.testing.assert_array_equal(big_labels[::2, ::2], labels)  # nearest at 2x: each pixel doubled
        np.testing.assert_allclose(big_image.mean(), image.mean(), atol=2e-3)
    assert records_lib.validation_tile_count(doubled, 48) == 4 * records_lib.validation_tile_count(plain, 48)
    patches = next(iter(data.training_dataset(doubled, 64, 4, seed=1)))
    assert patches[0].shape == (4, 64, 64, 1)


def test_prediction_resamples_each_frame_and_brings_its_labels_back(tiny_model, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tiny_model, run / "checkpoints" / "best.keras")
    (run / "plan.json").write_text(json.dumps({"settings": {"input_scale": {"value": 1.5}}}))
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 4000, (37, 45)).astype(np.uint16)
    tiff.write(tmp_path / "f0.tif", raw)
    predict.run_prediction(str(tmp_path / "f*.tif"), str(run), str(tmp_path / "out"), tta=False,
                           overrides={"min_size": 0, "mask_threshold": 0.5})
    written = tiff.read(tmp_path / "out" / "labels" / "f0.tif")
    assert written.shape == raw.shape
    model = predict.load_model(str(run))
    assert model.scale == 1.5
    # by hand: the stretched frame at 56 x 68 (1.5 x, rounded), the network, instances there, the nearest back
    image = resampling.image(predict.stretched(raw), 1.5)
    assert image.shape == (56, 68)
    settings = predict.postprocess_settings(model, {"min_size": 0, "mask_threshold": 0.5})
    small = predict.instances.labels_from_outputs(predict.network_outputs(model, [image])[0], settings)
    rows = np.minimum(((np.arange(37) + 0.5) * 56 / 37).astype(int), 55)
    cols = np.minimum(((np.arange(45) + 0.5) * 68 / 45).astype(int), 67)
    np.testing.assert_array_equal(written, small[rows][:, cols])
    assert len(np.unique(written)) > 1  # cells were found, so the comparison says something


def test_shrinking_is_antialiased():
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (8, 8))  # one-pixel stripes, 8 x 16
    shrunk = resampling.image(stripes, 0.5)
    assert shrunk.shape == (4, 8)
    # away from the edges, averaged over the stripes (sampling would give 0s or 1s, or stripes of both)
    np.testing.assert_allclose(shrunk[:, 1:-1], 0.5, atol=1e-5)
