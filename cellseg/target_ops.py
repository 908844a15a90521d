"""The targets as `keras.ops`, on the device, after augmentation: from labels to `y_true`, logits to outputs.

Binary and three-class targets are computed here from the augmented labels, so
they stay exact after elastic warping; the distance maps come warped from the
converter. `pack` makes the `y_true` of the loss and metrics; `activate` turns
logits into the target's outputs. What each target is lives in `cellseg.targets`.
Written in `keras.ops` alone, so they run on any Keras backend (TensorFlow, the
default, or JAX) and give the same values on each (tests/test_backends.py).
"""

from __future__ import annotations

import keras
from keras import ops

from cellseg import targets

PADDING_LABEL = -1  # the labels of a padding tile (`data`, `batches`): `pack` weighs it 0, nothing counts it


def inner_boundaries(labels):
    """Cell pixels whose 4-neighbourhood holds another label; `labels` [B, H, W, 1] integer.

    Equals scikit-image's `find_boundaries(labels, mode="inner")` per sample
    (edges of the frame mirror, so a cell cut by the border has no boundary there).
    """
    padded = ops.pad(labels, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
    neighbours = (padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2], padded[:, 1:-1, 2:])
    differs = ops.any(ops.stack([ops.not_equal(n, labels) for n in neighbours]), axis=0)
    return ops.logical_and(differs, ops.not_equal(labels, 0))


def classes(labels):
    """Background 0 / interior 1 / boundary 2 (int32 [B, H, W, 1]) from instance labels."""
    labels = ops.cast(labels, "int32")
    cell = ops.cast(labels > 0, "int32")
    return cell + ops.cast(inner_boundaries(labels), "int32")


def pack(target: str, labels, maps, class_weights):
    """`y_true` of the loss and metrics, [B, H, W, K] float32, from augmented labels and maps.

    Channel 0 is the cell mask and channel 1 the per-pixel loss weight (class
    weight plus the border term on background) for every target; then the
    target's own channels: the class id (three_class), or the cell and neighbour
    distances (distance, from `maps[..., 1:3]`). Negative labels mark padding
    (`PADDING_LABEL`): weight 0, which the loss and the metrics skip.
    """
    labels = ops.cast(labels, "int32")
    maps = ops.cast(maps, "float32")
    cell = labels > 0
    border = maps[..., 0:1]
    mask = ops.cast(cell, "float32")
    row = targets.get(target)
    if len(row.class_names) > 2:
        ids = classes(labels)
        weights = ops.take(ops.convert_to_tensor(class_weights, "float32"), ids) \
            + ops.where(ids == targets.BACKGROUND, border, 0.0)
        weights = ops.where(labels < 0, 0.0, weights)
        return ops.concatenate([mask, weights, ops.cast(ids, "float32")], axis=-1)
    background, foreground = class_weights
    weights = ops.where(labels < 0, 0.0, ops.where(cell, foreground, background + border))
    if row.distances:
        return ops.concatenate([mask, weights, maps[..., 1:3]], axis=-1)
    return ops.concatenate([mask, weights], axis=-1)


def is_padding(labels):
    """[B] bool: which tiles of a batch of labels [B, H, W, 1] are padding (`PADDING_LABEL` everywhere)."""
    return ops.all(ops.equal(labels, PADDING_LABEL), axis=(1, 2, 3))


def activate(target: str, logits):
    """Network outputs from logits: sigmoid (binary), softmax (three_class), identity (distance)."""
    return keras.activations.get(targets.get(target).activation)(ops.cast(logits, "float32"))


def counted(y_true):
    """[..., 1] float: 1 where a pixel of `pack`'s `y_true` counts (weight above 0), 0 on padding."""
    return ops.cast(y_true[..., 1:2] > 0, "float32")


def cell_score(target: str, outputs):
    """[..., 1] score that is above the target's `metric_threshold` on cells: P(cell), or the cell distance."""
    if targets.get(target).activation == "softmax":
        return 1.0 - outputs[..., 0:1]
    return outputs[..., 0:1]


def picture(target: str, y_true, outputs):
    """(target, prediction) as [B, H, W, 1] images in [0, 1] for TensorBoard."""
    row = targets.get(target)
    if row.activation == "softmax":
        predicted = ops.cast(ops.argmax(outputs, axis=-1)[..., None], "float32")
        return y_true[..., 2:3] / 2.0, predicted / 2.0
    if row.distances:
        return y_true[..., 2:3], ops.clip(outputs[..., 0:1], 0.0, 1.0)
    return y_true[..., 0:1], ops.cast(outputs > row.metric_threshold, "float32")
