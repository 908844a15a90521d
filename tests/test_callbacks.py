"""The epoch's validation SEG: it follows the better network where SEG at the default thresholds is flat."""

import numpy as np
from scipy import ndimage

from cellseg import callbacks, instances, scores


def discs(shape, centres, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for label, (y, x) in enumerate(centres, 1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = label
    return labels


def three_class_outputs(cells, interior_probability, boundary_probability=0.05):
    """Softmax-like outputs whose interior is `interior_probability` on the cells' inner pixels."""
    interior = np.zeros(cells.shape, np.float32)
    inner = cells > 0
    inner = ndimage.binary_erosion(inner, iterations=1)
    interior[inner] = interior_probability
    boundary = np.where((cells > 0) & ~inner, 0.4, boundary_probability).astype(np.float32)
    background = 1.0 - interior - boundary
    return np.stack([background, interior, boundary], axis=-1)


def test_the_epoch_seg_follows_the_better_network_where_the_defaults_see_nothing():
    reference = discs((96, 96), [(20, 20), (20, 60), (60, 30), (70, 75)], 9)
    # Both networks are unsure (interior 0.45, under the default mask threshold 0.5): at the defaults both
    # segment nothing. The better one has every cell; the worse one has lost half of them.
    better = three_class_outputs(reference, 0.45)
    half = np.where(np.isin(reference, (1, 2)), reference, 0)
    worse = three_class_outputs(half, 0.45)
    defaults = instances.Postprocess("three_class")
    at_defaults = [scores.seg_score([reference], [instances.labels_from_outputs(o, defaults)]) for o in (better, worse)]
    assert at_defaults == [0.0, 0.0]  # flat: a checkpoint chosen by it is chosen by noise
    chosen = [callbacks.epoch_seg([o], [reference], "three_class") for o in (better, worse)]
    assert chosen[0] > 0.8 and chosen[1] < 0.55 and chosen[0] > chosen[1]
