import numpy as np
import pytest

from cellseg import predict, training


def tiny_probability_model(size, weights=None):
    segmenter = training.Segmenter(size, base_filters=4, depth=2)
    if weights is not None:
        segmenter.unet.set_weights(weights)
    return training.probability_model(segmenter), segmenter.unet.get_weights()


def test_tiled_prediction_equals_whole_padded_frame_prediction():
    rng = np.random.default_rng(0)
    image = rng.random((70, 90)).astype(np.float32)  # not a multiple of the tile
    tile, overlap = 96, 64
    tiled_model, weights = tiny_probability_model(tile)
    tiled = predict.predict_probabilities(lambda t: tiled_model.predict_on_batch(t), image, tile, overlap)
    assert tiled.shape == image.shape
    stride, down, across, padding = predict.tile_layout(70, 90, tile, overlap)
    padded = np.pad(image, padding, mode="symmetric")
    whole_model, _ = tiny_probability_model(padded.shape[0], weights)
    assert padded.shape[0] == padded.shape[1]
    whole = whole_model.predict_on_batch(padded[None, ..., None])[0, ..., 0]
    margin = overlap // 2
    expected = whole[margin : margin + 70, margin : margin + 90]
    assert np.abs(tiled - expected).max() < 1e-3


def test_layout_covers_the_frame_and_refuses_bad_overlaps():
    stride, down, across, ((top, bottom), (left, right)) = predict.tile_layout(1000, 1300, 256, 64)
    assert stride == 192 and down * stride >= 1000 and across * stride >= 1300
    assert top == left == 32 and top + 1000 + bottom == down * stride + 64
    with pytest.raises(ValueError, match="overlap"):
        predict.tile_layout(100, 100, 64, 64)
    with pytest.raises(ValueError, match="overlap"):
        predict.tile_layout(100, 100, 64, 7)


def test_a_large_odd_frame_keeps_its_size():
    image = np.zeros((1000, 1300), np.float32)
    calls = []

    def constant(tiles):
        calls.append(len(tiles))
        return np.full(tiles.shape, 0.25, np.float32)

    result = predict.predict_probabilities(constant, image, 256, 64, batch_size=8)
    assert result.shape == (1000, 1300) and np.all(result == 0.25)
    assert sum(calls) == 6 * 7 and max(calls) == 8
