"""What the network learns, derived from instance labels.

Three targets, chosen by `cellseg-train --target`:

- `binary`: one channel, cell (1) or background (0);
- `three_class`: background (0) / cell interior (1) / cell boundary (2), where
  the boundary is every cell pixel whose 4-neighbourhood holds another label
  (scikit-image's `find_boundaries(mode="inner")`): two touching cells are kept
  apart by two boundary pixels, which the interior seeds of post-processing
  never cross;
- `distance`: two regression maps after Scherr et al. (2020): the *cell
  distance* (each cell's distance to its own border, normalised per cell to 1
  at its centre) and the *neighbour distance* (how close the nearest other cell
  is: 1 next to it, falling to 0 one typical cell radius away, cubed and
  smoothed), highest in the gaps and contacts between cells.

`TABLE` is the one description of each target; nothing else compares target
names. Binary and three-class targets are computed in TensorFlow on the device
from the augmented labels (`cellseg.target_ops`), so they stay exact after
elastic warping. The distance maps need per-cell distance transforms: the
converter computes them once per frame in numpy (`distance_maps`), and
augmentation warps them with the image's grid. `three_class_numpy` is the numpy
twin of `target_ops.classes`, for the converter's statistics and for tests.
This module loads no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage
from skimage import segmentation

from cellseg import preprocess

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
NEIGHBOUR_SMOOTHING = 1.0  # Gaussian sigma (px) of the neighbour distance


@dataclasses.dataclass(frozen=True)
class Target:
    """Everything cellseg knows of one target, in one row: what the network outputs and how it becomes cells.

    Thresholds of post-processing are open intervals (`mask_range`,
    `seed_range`; None: unbounded). Seeds come from `seeds`: the h-maxima of
    the mask's distance transform (`seed_threshold` in pixels), the interior
    probability (above a level, or its peaks: `peak_grid`), or the cell minus
    the neighbour distance (`cellseg.instances`).
    """

    name: str
    channels: int  # network outputs
    activation: str  # Keras activation from logits to outputs
    class_names: tuple[str, ...]  # the classes the loss balances (`records.Records.class_weights`)
    distances: bool  # learns the converter's distance maps (records made with --distance_maps)
    metric_threshold: float  # a pixel is a cell for the training metrics where `cell_score` exceeds it
    seeds: str  # "h_maxima", "interior" or "cell_minus_neighbour"
    mask_threshold: float  # post-processing defaults, before tuning
    seed_threshold: float
    mask_range: tuple[float | None, float | None]
    seed_range: tuple[float | None, float | None]
    mask_grid: tuple[float, ...]  # what `instances.tune` tries
    seed_grid: tuple[float, ...]
    peak_grid: tuple[float, ...]  # seed heights of the interior's peaks (`Postprocess.seed_peaks`); () if none
    output_names: tuple[str, ...]  # the network's output channels, as a model package names them
    # The few settings of `instances.tune` tried each epoch for `val_seg` ("mask_threshold", "seed_threshold",
    # "seed_peak_height"): the best of them follows what tuning will reach where the defaults see nothing.
    epoch_grid: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @property
    def packed_channels(self) -> int:
        """Channels of `pack`'s `y_true`: mask, weight, then the class id or the two distance maps."""
        return 2 + (1 if len(self.class_names) > 2 else 0) + (2 if self.distances else 0)


# A three-class seed needs a confident interior (0.7), so that a blurred boundary
# between two cells does not join their seeds. Where a short-trained network
# draws no boundary between touching cells, its interior still dips there: the
# interior's peaks part them (synthetic phase contrast after 80 steps: SEG 0.716
# with the level, 0.771 with the peaks); `instances.tune` tries both. The
# distance mask threshold sits below a cell's border value (1 / its largest
# distance to its border) for cells up to 20 px in radius.
TABLE = (
    Target("binary", 1, "sigmoid", ("background", "cells"), False, 0.5, "h_maxima", 0.5, 2.0,
           (0.0, 1.0), (0.0, None), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (0.5, 1.0, 2.0, 3.0, 5.0), (), ("cell",),
           (("mask_threshold", (0.3, 0.5)), ("seed_threshold", (1.0, 2.0, 3.0)))),
    Target("three_class", 3, "softmax", ("background", "interior", "boundary"), False, 0.5, "interior", 0.5, 0.7,
           (0.0, 1.0), (0.0, 1.0), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), (0.3, 0.5, 0.7, 0.8, 0.9, 0.95),
           (0.005, 0.01, 0.02, 0.05, 0.1, 0.2), ("background", "interior", "boundary"),
           (("mask_threshold", (0.3, 0.5)), ("seed_threshold", (0.5, 0.7)), ("seed_peak_height", (0.05,)))),
    Target("distance", 2, "linear", ("background", "cells"), True, 0.1, "cell_minus_neighbour", 0.05, 0.4,
           (0.0, None), (-1.0, 1.0), (0.02, 0.05, 0.1, 0.15, 0.2, 0.3), (-0.2, 0.0, 0.2, 0.3, 0.4, 0.5, 0.6),
           (), ("cell_distance", "neighbour_distance"),
           (("mask_threshold", (0.05, 0.1)), ("seed_threshold", (0.2, 0.4, 0.5)))),
)
BY_NAME = {target.name: target for target in TABLE}
TARGETS = tuple(BY_NAME)
DEFAULT = "three_class"  # the best measured (docs/TARGETS.md)


def get(name: str) -> Target:
    """The row of target `name`; ValueError naming the targets for another name."""
    if name not in BY_NAME:
        raise ValueError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}")
    return BY_NAME[name]


def check(name: str) -> str:
    """`name`, when it names a target; ValueError otherwise."""
    return get(name).name


# --- numpy (converter, tests) ----------------------------------------------------------


def three_class_numpy(labels: np.ndarray) -> np.ndarray:
    """Background 0 / interior 1 / boundary 2 (uint8) of a 2-D label image."""
    labels = np.asarray(labels)
    boundary = segmentation.find_boundaries(labels, mode="inner")
    return np.where(labels > 0, np.where(boundary, BOUNDARY, INTERIOR), BACKGROUND).astype(np.uint8)


def neighbour_radius(labels: np.ndarray) -> float:
    """The frame's typical cell radius: median over cells of sqrt(area / pi), at least 2 px."""
    areas = np.bincount(np.asarray(labels, np.int64).ravel())[1:]
    areas = areas[areas > 0]
    if not areas.size:
        return 2.0
    return max(2.0, float(np.sqrt(np.median(areas) / np.pi)))


def distance_maps(labels: np.ndarray, radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cell distance, neighbour distance), float32 in [0, 1], of a 2-D label image.

    Cell distance: inside each cell, the Euclidean distance to the nearest pixel
    outside it, divided by the cell's largest such distance (1 at the centre,
    smallest on the border, 0 on background).

    Neighbour distance: at every pixel, `d2` is the distance to the second
    nearest cell (for a cell pixel: to the nearest other cell);
    `(1 - d2 / radius)^3` clipped at 0 and smoothed by a Gaussian of sigma 1 px.
    `radius` defaults to the frame's typical cell radius (`neighbour_radius`),
    so the map adapts to the cells' size.
    """
    labels = np.asarray(labels, np.int64)
    if labels.ndim != 2:
        raise ValueError(f"distance_maps needs a 2-D label image, got shape {labels.shape}")
    radius = neighbour_radius(labels) if radius is None else float(radius)
    cell = np.zeros(labels.shape, np.float32)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        # A one-pixel margin holds the background the transform needs.
        window = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, size)) for s, size in zip(box, labels.shape))
        inside = labels[window] == label
        distance = ndimage.distance_transform_edt(inside)
        cell[window] = np.where(inside, distance / max(distance.max(), 1.0), cell[window])
    # Beyond radius + 1 px the neighbour term is 0.
    _, second = preprocess.nearest_cells(labels, int(math.ceil(radius)) + 1)
    closeness = np.clip(1.0 - second / radius, 0.0, 1.0) ** 3
    neighbour = ndimage.gaussian_filter(closeness, NEIGHBOUR_SMOOTHING) if closeness.any() else closeness
    return cell, np.clip(neighbour, 0.0, 1.0).astype(np.float32)
