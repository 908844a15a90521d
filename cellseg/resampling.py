"""Frames resampled to the plan's input scale (`plan.json`'s `input_scale`), the same way in training and prediction.

A U-Net sees cells well within a range of sizes: a few pixels across, the
interior and the boundary classes barely differ; far larger than its receptive
field, it sees a cell's middle without its edges. The plan scales frames whose
cells lie outside that range (`cellseg.plan.input_scale`): the records'
frames as they are read for training, validation and tuning (`cellseg.data`),
and each frame before the network in prediction, whose labels are made at that
scale, as tuning made them, and brought back to the frame's own size.

Images and maps are resampled bilinearly (antialiased when shrunk), labels by
the nearest pixel, with TensorFlow's `tf.image.resize` in both places, so
prediction sees what training saw.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def size_of(height, width, scale: float):
    """The (height, width) of a frame of `height` x `width` at `scale`: rounded, at least one pixel."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def image(values, scale: float):
    """An image [H, W] or [H, W, C] (numpy or tensor) at `scale`, bilinear; the same array when `scale` is 1."""
    if scale == 1:
        return values
    size = _size(values, scale)
    resized = tf.image.resize(_with_channels(values), size, "bilinear", antialias=scale < 1)
    return _like(resized, values)


def labels(values, size):
    """Labels [H, W] or [H, W, C] at `size` (height, width), nearest pixel, the dtype kept."""
    resized = tf.image.resize(_with_channels(values), size, "nearest")
    return _like(resized, values)


def frame(record: dict, scale: float) -> dict:
    """A decoded record (`schema.decode`) with its image, labels and maps at `scale` (inside tf.data)."""
    if scale == 1:
        return record
    size = _size(record["image"], scale)
    out = dict(record)
    for name in ("image", "weights", "cell_distance", "neighbour_distance"):
        out[name] = tf.image.resize(record[name], size, "bilinear", antialias=scale < 1)
    out["labels"] = tf.image.resize(record["labels"], size, "nearest")
    out["height"], out["width"] = tf.cast(size[0], tf.int64), tf.cast(size[1], tf.int64)
    return out


def _size(values, scale: float):
    if isinstance(values, np.ndarray):
        return size_of(values.shape[0], values.shape[1], scale)
    shape = tf.cast(tf.shape(values)[:2], tf.float64)
    return tf.maximum(1, tf.cast(tf.round(shape * scale), tf.int32))


def _with_channels(values):
    return values[..., None] if len(values.shape) == 2 else values


def _like(resized, values):
    """`resized` in the form of `values`: numpy stays numpy (its dtype kept), [H, W] stays [H, W]."""
    if len(values.shape) == 2:
        resized = resized[..., 0]
    if isinstance(values, np.ndarray):
        return resized.numpy().astype(values.dtype, copy=False)
    return resized
