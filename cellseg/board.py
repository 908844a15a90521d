"""TensorBoard event files written by TensorBoard's own writer, with or without TensorFlow.

`Writer` writes scalars and images in the form `tf.summary` writes them
(tensor summaries tagged for TensorBoard's scalar and image plugins), through
`tensorboard.summary.writer.EventFileWriter`, the pure-Python writer that
other frameworks use too; `EpochScalars` is the Keras callback of the epochs'
metrics, in the `train/` and `validation/` runs as Keras' TensorBoard callback
names them.
"""

from __future__ import annotations

import io
import os
import time

import keras
import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

SUFFIX = ".v2"  # as tf.summary names its event files


class Writer:
    """One run's event file in `log_dir`."""

    def __init__(self, log_dir: str):
        self._events = EventFileWriter(log_dir, filename_suffix=SUFFIX)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._write(tag, tensor_util.make_tensor_proto(np.float32(value)),
                    scalar_metadata.create_summary_metadata(display_name=tag, description=""), step)

    def images(self, tag: str, images: np.ndarray, step: int) -> None:
        """`images` [N, H, W, C] (C 1 or 3) in [0, 1], as PNGs."""
        height, width = images.shape[1:3]
        encoded = [str(width).encode(), str(height).encode()] + [_png(image) for image in images]
        self._write(tag, tensor_util.make_tensor_proto(np.array(encoded, dtype=object)),
                    image_metadata.create_summary_metadata(display_name=tag, description=""), step)

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()

    def _write(self, tag, tensor, metadata, step: int) -> None:
        value = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)
        self._events.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                               summary=summary_pb2.Summary(value=[value])))


def _png(image: np.ndarray) -> bytes:
    levels = np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(levels[..., 0] if levels.shape[-1] == 1 else levels).save(buffer, format="PNG")
    return buffer.getvalue()


class EpochScalars(keras.callbacks.Callback):
    """Each epoch's metrics as TensorBoard scalars: `epoch_<name>` in `train/`, and the `val_` ones in
    `validation/`, as Keras' TensorBoard callback writes them."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self.writers = {}

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            run, name = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            if run not in self.writers:
                self.writers[run] = Writer(os.path.join(self.log_dir, run))
            self.writers[run].scalar(f"epoch_{name}", float(keras.ops.convert_to_numpy(value)), epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
