"""From the network's cell probabilities to instance labels (numpy, no Keras).

Threshold the probabilities, then split touching cells with a seeded watershed
on the distance transform of the mask: seeds are the regional maxima of the
distance that stand out by more than `seed_height` pixels (h-maxima), so a
narrow neck between two round cells separates them while the ridge along one
elongated cell does not cut it. Objects under `min_size` pixels are dropped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from skimage import morphology, segmentation


@dataclasses.dataclass(frozen=True)
class Postprocess:
    threshold: float = 0.5  # cell probability above which a pixel is a cell
    seed_height: float = 2.0  # pixels a distance maximum must rise to seed its own cell
    min_size: int = 10  # objects of fewer pixels are dropped

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.seed_height < 0 or self.min_size < 0:
            raise ValueError("seed_height and min_size must be >= 0")


def labels_from_probabilities(probabilities: np.ndarray, settings: Postprocess = Postprocess()) -> np.ndarray:
    """Instance labels (uint16, 0 = background, 1..n) of a [H, W] probability map."""
    mask = np.asarray(probabilities) > settings.threshold
    return split_touching(mask, settings.seed_height, settings.min_size)


def split_touching(mask: np.ndarray, seed_height: float = 2.0, min_size: int = 10) -> np.ndarray:
    """Instance labels of a binary mask, touching cells split by a distance-transform watershed."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.uint16)
    distance = ndimage.distance_transform_edt(mask)
    seeds = morphology.h_maxima(distance, seed_height) if seed_height > 0 else morphology.local_maxima(distance)
    markers, _ = ndimage.label(seeds & mask)
    labels = segmentation.watershed(-distance, markers, mask=mask)
    # Components without a seed (smaller than the seed height) keep their own label.
    unseeded, _ = ndimage.label(mask & (labels == 0))
    labels = np.where(unseeded > 0, unseeded + labels.max(), labels)
    if min_size:
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    relabelled, _, _ = segmentation.relabel_sequential(labels)
    if relabelled.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{relabelled.max()} objects do not fit uint16 labels")
    return relabelled.astype(np.uint16)
