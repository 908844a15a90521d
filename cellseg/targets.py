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

Binary and three-class targets are computed in TensorFlow on the device from
the augmented labels (`classes`), so they stay exact after elastic warping. The
distance maps need per-cell distance transforms: the converter computes them
once per frame in numpy (`distance_maps`), and augmentation warps them with
the image's grid. `three_class_numpy` is the numpy twin of `classes`, for the
converter's statistics and for tests.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from cellseg import preprocess

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
NEIGHBOUR_SMOOTHING = 1.0  # Gaussian sigma (px) of the neighbour distance


@dataclasses.dataclass(frozen=True)
class Target:
    """Everything cellseg knows of one target, in one row: what the network outputs and how it becomes cells.

    Thresholds of post-processing are open intervals (`mask_range`,
    `seed_range`; None: unbounded). Seeds come from `seeds`: the h-maxima of
    the mask's distance transform (`seed_threshold` in pixels), the interior
    probability, or the cell minus the neighbour distance (`cellseg.instances`).
    """

    name: str
    channels: int  # network outputs
    activation: str  # Keras activation from logits to outputs
    class_names: tuple[str, ...]  # the classes the loss balances (`data.Records.class_weights`)
    distances: bool  # learns the converter's distance maps (records made with --distance_maps)
    metric_threshold: float  # a pixel is a cell for the training metrics where `cell_score` exceeds it
    seeds: str  # "h_maxima", "interior" or "cell_minus_neighbour"
    mask_threshold: float  # post-processing defaults, before tuning
    seed_threshold: float
    mask_range: tuple[float | None, float | None]
    seed_range: tuple[float | None, float | None]
    mask_grid: tuple[float, ...]  # what `instances.tune` tries
    seed_grid: tuple[float, ...]

    @property
    def packed_channels(self) -> int:
        """Channels of `pack`'s `y_true`: mask, weight, then the class id or the two distance maps."""
        return 2 + (1 if len(self.class_names) > 2 else 0) + (2 if self.distances else 0)


# A three-class seed needs a confident interior (0.7), so that a blurred boundary
# between two cells does not join their seeds. The distance mask threshold sits
# below a cell's border value (1 / its largest distance to its border) for cells
# up to 20 px in radius.
TABLE = (
    Target("binary", 1, "sigmoid", ("background", "cells"), False, 0.5, "h_maxima", 0.5, 2.0,
           (0.0, 1.0), (0.0, None), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (0.5, 1.0, 2.0, 3.0, 5.0)),
    Target("three_class", 3, "softmax", ("background", "interior", "boundary"), False, 0.5, "interior", 0.5, 0.7,
           (0.0, 1.0), (0.0, 1.0), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95), (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)),
    Target("distance", 2, "linear", ("background", "cells"), True, 0.1, "cell_minus_neighbour", 0.05, 0.4,
           (0.0, None), (-1.0, 1.0), (0.02, 0.05, 0.1, 0.15, 0.2, 0.3), (-0.2, 0.0, 0.2, 0.3, 0.4, 0.5, 0.6)),
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
    from skimage import segmentation

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


# --- TensorFlow (on the device, after augmentation) -------------------------------------


def inner_boundaries(labels):
    """Cell pixels whose 4-neighbourhood holds another label; `labels` [B, H, W, 1] integer.

    Equals scikit-image's `find_boundaries(labels, mode="inner")` per sample
    (edges of the frame mirror, so a cell cut by the border has no boundary there).
    """
    import tensorflow as tf

    padded = tf.pad(labels, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    neighbours = (padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
    differs = tf.reduce_any(tf.stack([n != labels for n in neighbours]), axis=0)
    return tf.logical_and(differs, labels != 0)


def classes(labels):
    """Background 0 / interior 1 / boundary 2 (int32 [B, H, W, 1]) from instance labels."""
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    cell = tf.cast(labels > 0, tf.int32)
    return cell + tf.cast(inner_boundaries(labels), tf.int32)


def pack(target: str, labels, maps, class_weights):
    """`y_true` of the loss and metrics, [B, H, W, K] float32, from augmented labels and maps.

    Channel 0 is the cell mask and channel 1 the per-pixel loss weight (class
    weight plus the border term on background) for every target; then the
    target's own channels: the class id (three_class), or the cell and neighbour
    distances (distance, from `maps[..., 1:3]`). Negative labels mark padding
    (`data.PADDING_LABEL`): weight 0, which the loss and the metrics skip.
    """
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    cell = labels > 0
    border = maps[..., 0:1]
    mask = tf.cast(cell, tf.float32)
    row = get(target)
    if len(row.class_names) > 2:
        ids = classes(labels)
        weights = tf.gather(tf.constant(class_weights, tf.float32), ids) + tf.where(ids == BACKGROUND, border, 0.0)
        weights = tf.where(labels < 0, 0.0, weights)
        return tf.concat([mask, weights, tf.cast(ids, tf.float32)], axis=-1)
    background, foreground = class_weights
    weights = tf.where(labels < 0, 0.0, tf.where(cell, foreground, background + border))
    if row.distances:
        return tf.concat([mask, weights, maps[..., 1:3]], axis=-1)
    return tf.concat([mask, weights], axis=-1)


def activate(target: str, logits):
    """Network outputs from logits: sigmoid (binary), softmax (three_class), identity (distance)."""
    import keras
    import tensorflow as tf

    return keras.activations.get(get(target).activation)(tf.cast(logits, tf.float32))


def counted(y_true):
    """[..., 1] float: 1 where a pixel of `pack`'s `y_true` counts (weight above 0), 0 on padding."""
    import tensorflow as tf

    return tf.cast(y_true[..., 1:2] > 0, tf.float32)


def cell_score(target: str, outputs):
    """[..., 1] score that is above the target's `metric_threshold` on cells: P(cell), or the cell distance."""
    if get(target).activation == "softmax":
        return 1.0 - outputs[..., 0:1]
    return outputs[..., 0:1]


def picture(target: str, y_true, outputs):
    """(target, prediction) as [B, H, W, 1] images in [0, 1] for TensorBoard."""
    import tensorflow as tf

    row = get(target)
    if row.activation == "softmax":
        predicted = tf.cast(tf.argmax(outputs, axis=-1)[..., None], tf.float32)
        return y_true[..., 2:3] / 2.0, predicted / 2.0
    if row.distances:
        return y_true[..., 2:3], tf.clip_by_value(outputs[..., 0:1], 0.0, 1.0)
    return y_true[..., 0:1], tf.cast(outputs > row.metric_threshold, tf.float32)
