import math

import numpy as np
import pytest
from scipy import ndimage

from cellseg import preprocess


def test_stretch_maps_percentiles_to_zero_and_one():
    image = np.arange(101, dtype=np.uint16).reshape(1, 101) * 100  # 0, 100, ..., 10000
    stretched, (lo, hi) = preprocess.percentile_stretch(image, 2.0, 98.0)
    assert (lo, hi) == (200.0, 9800.0)  # numpy's linear percentiles of an arithmetic series
    assert stretched.dtype == np.float32
    expected = np.clip((image.astype(np.float64) - 200.0) / 9600.0, 0, 1)
    np.testing.assert_allclose(stretched, expected, atol=1e-7)
    assert stretched[0, 50] == pytest.approx(0.5)
    assert stretched.min() == 0.0 and stretched.max() == 1.0


def test_stretch_uses_the_full_16_bit_range():
    image = np.array([[1000, 60000], [30500, 30500]], np.uint16)
    stretched, (lo, hi) = preprocess.percentile_stretch(image, 0.0, 100.0)
    assert (lo, hi) == (1000.0, 60000.0)
    np.testing.assert_allclose(stretched, [[0.0, 1.0], [0.5, 0.5]], atol=1e-7)


def test_flat_image_stretches_to_zeros_and_bad_percentiles_raise():
    stretched, (lo, hi) = preprocess.percentile_stretch(np.full((4, 4), 7, np.uint8))
    assert lo == hi == 7.0
    np.testing.assert_array_equal(stretched, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="percentiles"):
        preprocess.percentile_stretch(np.zeros((2, 2)), 98, 2)


def test_foreground_fraction_and_the_label_range_of_a_mask():
    labels = np.array([[0, 3], [65535, 0]], np.uint16)
    assert preprocess.foreground_fraction(labels) == 0.5
    assert preprocess.labels_fit(labels) and preprocess.labels_fit(np.zeros((0, 0), np.int64))
    assert not preprocess.labels_fit(np.array([[-1]])) and not preprocess.labels_fit(np.array([[65536]]))


def test_softened_weights_keep_a_mean_of_one_and_take_the_power_of_the_ratios():
    fractions = (0.86, 0.13, 0.01)
    for power in (0.0, 0.5, 1.0):
        weights = preprocess.softened_weights(fractions, power)
        assert sum(f * w for f, w in zip(fractions, weights)) == pytest.approx(1.0)
        assert weights[2] / weights[0] == pytest.approx((0.86 / 0.01) ** power)
    assert preprocess.softened_weights(fractions, 1.0) == pytest.approx(tuple(1 / (3 * f) for f in fractions))
    assert preprocess.softened_weights(fractions, 0.0) == pytest.approx((1.0, 1.0, 1.0))


def test_balanced_class_weights_give_each_class_half():
    background, foreground = preprocess.softened_weights([0.8, 0.2], power=1.0)
    assert (background, foreground) == pytest.approx((0.625, 2.5))
    assert 0.2 * foreground == pytest.approx(0.8 * background) == pytest.approx(0.5)


def two_squares(gap):
    labels = np.zeros((40, 60), np.uint16)
    labels[10:30, 10:25] = 1
    labels[10:30, 25 + gap:40 + gap] = 2
    return labels


def test_gap_between_touching_squares_weighs_about_w0_plus_wc():
    labels = two_squares(gap=1)  # column 25 is a one-pixel gap
    weights = preprocess.border_weight_map(labels, w0=10.0, sigma=5.0, class_weights=(0.5, 2.0))
    # d1 = d2 = 1 on the gap: w = w_c + w0 * exp(-(1 + 1)^2 / (2 * 5^2)).
    expected_gap = 0.5 + 10.0 * math.exp(-4.0 / 50.0)
    np.testing.assert_allclose(weights[10:30, 25], expected_gap, rtol=1e-6)
    assert expected_gap > 0.9 * 10.0 + 0.5
    np.testing.assert_array_equal(weights[labels > 0], 2.0)  # cells carry w_c only
    assert weights[0, 0] == pytest.approx(0.5, abs=1e-3)  # far from both cells


def test_weight_map_matches_brute_force_distances():
    rng = np.random.default_rng(1)
    labels = np.zeros((70, 90), np.int32)
    for label in range(1, 9):
        y, x = rng.integers(5, 65), rng.integers(5, 85)
        labels[max(y - 4, 0):y + 4, max(x - 5, 0):x + 5] = label
    w0, sigma = 10.0, 5.0
    # Brute force: every cell's distance map over the whole frame, sorted per pixel.
    distances = np.sort(
        np.stack([ndimage.distance_transform_edt(labels != label) for label in range(1, 9)]), axis=0
    )
    border = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    expected = 1.0 + np.where(labels == 0, border, 0.0)
    np.testing.assert_allclose(preprocess.border_weight_map(labels, w0, sigma), expected, atol=1e-4)


def test_single_cell_has_no_border_term_and_w0_zero_is_class_weights_only():
    labels = np.zeros((30, 30), np.uint16)
    labels[10:20, 10:20] = 5
    np.testing.assert_array_equal(preprocess.border_weight_map(labels), np.ones((30, 30), np.float32))
    weights = preprocess.border_weight_map(two_squares(1), w0=0.0, class_weights=(1.0, 3.0))
    np.testing.assert_array_equal(weights, np.where(two_squares(1) > 0, 3.0, 1.0))
