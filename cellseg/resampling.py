"""Frames resampled to the plan's input scale (`plan.json`'s `input_scale`), the same way in training and prediction.

A U-Net sees cells well within a range of sizes: a few pixels across, the
interior and the boundary classes barely differ; far larger than its receptive
field, it sees a cell's middle without its edges. The plan scales frames whose
cells lie outside that range (`cellseg.plan.input_scale`): the records'
frames as they are read for training, validation and tuning (`cellseg.data`, `cellseg.records`),
and each frame before the network in prediction, whose labels are made at that
scale, as tuning made them, and brought back to the frame's own size.

Images and maps are resampled bilinearly (antialiased when shrunk), labels by
the nearest pixel, by Keras' `ops.image.resize` (TensorFlow's `tf.image.resize`
on TensorFlow, which the tf.data pipeline calls itself; `jax.image.resize` on
JAX), so prediction sees what training saw.
"""

from __future__ import annotations

import keras
import numpy as np


def size_of(height, width, scale: float):
    """The (height, width) of a frame of `height` x `width` at `scale`: rounded, at least one pixel."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def image(values: np.ndarray, scale: float) -> np.ndarray:
    """An image [H, W] or [H, W, C] at `scale`, bilinear, its dtype kept; the same array when `scale` is 1."""
    if scale == 1:
        return values
    return _resized(values, size_of(values.shape[0], values.shape[1], scale), "bilinear", scale < 1)


def labels(values: np.ndarray, size) -> np.ndarray:
    """Labels [H, W] or [H, W, C] at `size` (height, width), nearest pixel, the dtype kept."""
    return _resized(values, size, "nearest", False)


MAPS = ("weights", "cell_distance", "neighbour_distance")


def frame(record: dict, scale: float) -> dict:
    """A record decoded in numpy (`record_reader.decode`) with its image, labels and maps at `scale`."""
    if scale == 1:
        return record
    out = {**record, "image": image(record["image"], scale), **{name: image(record[name], scale) for name in MAPS}}
    out["labels"] = labels(record["labels"], out["image"].shape[:2])
    out["height"], out["width"] = (np.int64(side) for side in out["image"].shape[:2])
    return out


def _resized(values: np.ndarray, size, interpolation: str, antialias: bool) -> np.ndarray:
    planes = values[..., None] if values.ndim == 2 else values
    # float32 in: an integer image is resized as numbers (nearest labels stay exact below 2**24).
    resized = keras.ops.image.resize(planes.astype(np.float32), tuple(int(side) for side in size),
                                     interpolation=interpolation, antialias=antialias, data_format="channels_last")
    resized = keras.ops.convert_to_numpy(resized).astype(values.dtype, copy=False)
    return resized[..., 0] if values.ndim == 2 else resized
