"""Pixel metrics of binary segmentation, accumulated over an epoch.

Each metric sums true/false positives and negatives over every pixel it sees
(the mask is `y_true[..., 0]`, predictions are logits thresholded at
probability `threshold`), so an epoch's Dice is the Dice of all its pixels, not
a mean of per-batch values. Pixel accuracy is kept for comparison with earlier
work; on frames that are 7 % cells it says 93 % for a blank prediction.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

KINDS = ("dice", "iou", "precision", "recall", "pixel_accuracy")


@keras.saving.register_keras_serializable(package="cellseg")
class PixelMetric(keras.metrics.Metric):
    """One of dice, iou, precision, recall, pixel_accuracy."""

    def __init__(self, kind: str = "dice", threshold: float = 0.5, name: str | None = None, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"unknown metric {kind!r}; expected one of {KINDS}")
        super().__init__(name=name or kind, **kwargs)
        self.kind, self.threshold = kind, threshold
        self.counts = self.add_variable(shape=(4,), initializer="zeros", name="counts")  # tp, fp, fn, tn

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth = tf.cast(y_true[..., 0:1], tf.float32) > 0.5
        predicted = tf.cast(y_pred, tf.float32) > math.log(self.threshold / (1.0 - self.threshold))
        count = lambda a, b: tf.reduce_sum(tf.cast(tf.logical_and(a, b), tf.float32))  # noqa: E731
        self.counts.assign_add(tf.stack([
            count(truth, predicted),
            count(~truth, predicted),
            count(truth, ~predicted),
            count(~truth, ~predicted),
        ]))

    def result(self):
        tp, fp, fn, tn = tf.unstack(self.counts)
        ratio = lambda a, b: tf.math.divide_no_nan(a, b)  # noqa: E731
        if self.kind == "dice":
            return ratio(2 * tp, 2 * tp + fp + fn)
        if self.kind == "iou":
            return ratio(tp, tp + fp + fn)
        if self.kind == "precision":
            return ratio(tp, tp + fp)
        if self.kind == "recall":
            return ratio(tp, tp + fn)
        return ratio(tp + tn, tp + fp + fn + tn)

    def reset_state(self):
        self.counts.assign(tf.zeros(4))

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "threshold": self.threshold}


def pixel_metrics(threshold: float = 0.5) -> list[PixelMetric]:
    return [PixelMetric(kind, threshold) for kind in KINDS]
