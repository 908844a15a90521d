import numpy as np
import pytest

from cellseg import instances, metrics


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_two_touching_discs_become_two_instances():
    first, second = disc((60, 80), (30, 25), 12), disc((60, 80), (30, 47), 12)
    assert (first & second).any()  # they overlap: one connected blob
    labels = instances.split_touching(first | second)
    assert labels.dtype == np.uint16 and labels.max() == 2
    reference = np.where(first, 1, 0) + np.where(second & ~first, 2, 0)
    assert metrics.seg_score([reference], [labels]) > 0.9


def test_an_elongated_cell_is_not_cut():
    yy, xx = np.mgrid[:40, :90]
    rod = ((yy - 20) / 6.0) ** 2 + ((xx - 45) / 35.0) ** 2 <= 1
    assert instances.split_touching(rod).max() == 1


def test_small_objects_are_dropped_and_labels_are_sequential():
    mask = disc((50, 50), (25, 25), 8)
    mask[2:4, 2:4] = True  # a 4-pixel speck
    labels = instances.split_touching(mask, min_size=10)
    assert labels.max() == 1 and labels[3, 3] == 0
    assert set(np.unique(instances.split_touching(mask, min_size=0))) == {0, 1, 2}


def test_probabilities_are_thresholded_and_empty_maps_give_no_cells():
    probabilities = np.where(disc((40, 40), (20, 20), 9), 0.8, 0.3)
    assert instances.labels_from_probabilities(probabilities).max() == 1
    assert instances.labels_from_probabilities(probabilities, instances.Postprocess(threshold=0.9)).max() == 0
    with pytest.raises(ValueError, match="threshold"):
        instances.Postprocess(threshold=1.5)
