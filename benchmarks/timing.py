"""Step timing shared by the training benchmarks; Keras alone, so gpu.py runs where TensorFlow is missing."""

from __future__ import annotations

import time

import keras


class StepTimes(keras.callbacks.Callback):
    """The wall-clock time at the end of each training batch; the median of their differences is a step."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())
