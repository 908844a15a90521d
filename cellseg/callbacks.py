"""The Keras callbacks of a training run, beyond Keras' own: images, SEG, an atomic backup, the best checkpoint.

Both files a killed run needs (the backup and `best.keras`) are written beside
their place and renamed into it, so a kill at any instant leaves them whole; the
backup is the run's last callback, so it never says an epoch is done whose
checkpoint or log row is missing.
"""

from __future__ import annotations

import json
import math
import os
import signal

import keras
import numpy as np

from cellseg import board, files, instances, segmenter, target_ops, targets, tiling


class ValidationImages(keras.callbacks.Callback):
    """Each epoch, a few validation tiles in TensorBoard: image | target | prediction.

    The target and prediction panels show the cell mask (binary), the classes
    (three_class: background black, interior grey, boundary white) or the cell
    distance (distance).
    """

    def __init__(self, log_dir: str, batch, count: int):
        super().__init__()
        self.writer = board.Writer(os.path.join(log_dir, "images"))
        real = ~keras.ops.convert_to_numpy(target_ops.is_padding(batch[1]))
        self.images, self.labels, self.maps = (np.asarray(tensor)[real][:count] for tensor in batch)

    def on_epoch_end(self, epoch, logs=None):
        target = self.model.target
        outputs = target_ops.activate(target, self.model(self.images, training=False))
        truth, predicted = target_ops.picture(target, self.model.pack(self.labels, self.maps), outputs)
        panels = np.concatenate([self.images, *(keras.ops.convert_to_numpy(p) for p in (truth, predicted))],
                                axis=2)  # side by side
        self.writer.images("validation: image | target | prediction", panels, epoch)
        self.writer.flush()


class ValidationSEG(keras.callbacks.Callback):
    """Each epoch, `val_seg`: the SEG of whole validation frames segmented as users get them.

    The frames (image, labels) are predicted whole (or in tiles when large, as
    `cellseg-predict` does, without test-time augmentation) and post-processed
    with each of the target's few epoch settings (`targets.Target.epoch_grid`,
    through `instances.tune`); `val_seg` is the best of them. At the defaults
    alone, SEG can stay flat while the network improves (a sparse or briefly
    trained network whose interior never reaches the default level), and a
    checkpoint chosen by it is chosen by noise; the best of a few settings
    follows the SEG that tuning at the end reaches. Callbacks after this one (the
    best checkpoint, the CSV log, TensorBoard) see the value in the epoch's logs.
    """

    def __init__(self, frames: list[tuple[np.ndarray, np.ndarray]], target: str):
        super().__init__()
        self.frames, self.target = frames, target
        self.network = None

    def on_epoch_end(self, epoch, logs=None):
        if self.network is None:  # one output model per frame shape, built once, given the weights each epoch
            self.network = segmenter.Network(self.model)
        self.network.refresh()
        outputs = []
        for image, _ in self.frames:
            tile, overlap = self.network.layout(*image.shape)
            outputs.append(tiling.predict_outputs(self.network, image, tile, overlap, tiling.tiles_per_call(tile)))
        if logs is not None:
            logs["val_seg"] = epoch_seg(outputs, [labels for _, labels in self.frames], self.target)


def epoch_seg(outputs: list[np.ndarray], references: list[np.ndarray], target: str) -> float:
    """The best SEG of the target's epoch settings (`targets.Target.epoch_grid`) on these frames."""
    _, seg = instances.tune(outputs, references, target, grid=dict(targets.get(target).epoch_grid))
    return seg


class LearningRate(keras.callbacks.Callback):
    """The optimizer's learning rate at each epoch's end in the logs (`learning_rate`), as Keras' plateau
    schedule puts it there, for a run whose rate follows a schedule."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class Backup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose files are replaced only once whole.

    Keras writes the backup in place, so a kill during the write leaves a torn
    file and no earlier state. Here both files are written beside the backup
    and renamed over it: a kill at any instant leaves a backup to resume from.
    """

    def _save_model(self):
        # Overrides Keras' private writer (tests/test_training.py checks it still exists).
        files.makedirs(self.backup_dir)
        partial_weights = os.path.join(self.backup_dir, "partial.weights.h5")
        partial_metadata = self._training_metadata_path + ".partial"
        self.model.save_weights(partial_weights, overwrite=True)
        with files.open_file(partial_metadata, "w") as handle:
            handle.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        files.replace(partial_weights, self._weights_path)
        files.replace(partial_metadata, self._training_metadata_path)


class BestCheckpoint(keras.callbacks.Callback):
    """The model of the best `monitor` score (higher is better), at `path`, written beside it and renamed over it.

    `best` is the best score of earlier runs in the same folder, so a resumed run
    keeps their checkpoint until it does better. While no checkpoint exists (a
    first epoch, one whose score is not a number, or a file lost to a kill),
    the epoch's model is written whatever its score: a finished run always has one.
    """

    def __init__(self, path: str, monitor: str = "val_dice", best: float = -math.inf):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        better = value is not None and value > self.best
        if not better and files.exists(self.path):
            return
        if better:
            self.best = float(value)
        partial = self.path[: -len(".keras")] + ".partial.keras"
        files.makedirs(os.path.dirname(self.path))
        self.model.save(partial)
        files.replace(partial, self.path)


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) during fit ends the run at the end of the current batch, as a KeyboardInterrupt.

    Python raises KeyboardInterrupt in whatever code runs next, and a
    finalizer that TensorFlow runs on garbage collection swallows it: the run
    went on. Noted here and raised from a callback, it always stops the run. A
    second Ctrl-C stops at once.
    """

    def __init__(self):
        super().__init__()
        self.interrupted = False
        self.previous = None

    def on_train_begin(self, logs=None):
        self.previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame):
        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _check(self, *args, **kwargs):
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check

    def on_train_end(self, logs=None):
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)


class WriteAtStart(keras.callbacks.Callback):
    """Write `text` to `path` once the run has started: a call that fails before leaves the file alone."""

    def __init__(self, path: str, text: str):
        super().__init__()
        self.path, self.text = path, text

    def on_train_begin(self, logs=None):
        with files.open_file(self.path, "w") as handle:
            handle.write(self.text)
