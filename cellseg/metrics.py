"""Pixel metrics of cell versus background, accumulated over an epoch; instance metrics.

Each metric sums true/false positives and negatives over every pixel it sees
(the mask is `y_true[..., 0]`; a pixel is predicted a cell where the target's
`targets.cell_score` of the network's outputs exceeds `threshold`, by default
the target's `targets.MASK_THRESHOLDS`), so an epoch's Dice is the Dice of all
its pixels, not a mean of per-batch values. Pixels of weight 0 (`y_true[..., 1]`,
the padding of the last validation batch) are not counted. Pixel accuracy is kept for comparison with earlier
work; on frames that are 7 % cells it says 93 % for a blank prediction.
"""

from __future__ import annotations


import keras
import numpy as np
import tensorflow as tf

from cellseg import targets

KINDS = ("dice", "iou", "precision", "recall", "pixel_accuracy")


@keras.saving.register_keras_serializable(package="cellseg")
class PixelMetric(keras.metrics.Metric):
    """One of dice, iou, precision, recall, pixel_accuracy, of a `target`'s logits."""

    def __init__(self, kind: str = "dice", threshold: float | None = None, target: str = "binary",
                 name: str | None = None, **kwargs):
        if kind not in KINDS:
            raise ValueError(f"unknown metric {kind!r}; expected one of {KINDS}")
        super().__init__(name=name or kind, **kwargs)
        self.target = targets.check(target)
        self.kind = kind
        self.threshold = targets.MASK_THRESHOLDS[target] if threshold is None else threshold
        self.counts = self.add_variable(shape=(4,), initializer="zeros", name="counts")  # tp, fp, fn, tn

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.float32)
        truth = y_true[..., 0:1] > 0.5
        predicted = targets.cell_score(self.target, targets.activate(self.target, y_pred)) > self.threshold
        counted = targets.counted(y_true)  # padding tiles count nowhere
        count = lambda a, b: tf.reduce_sum(tf.cast(tf.logical_and(a, b), tf.float32) * counted)  # noqa: E731
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
        return {**super().get_config(), "kind": self.kind, "threshold": self.threshold, "target": self.target}


def pixel_metrics(target: str = "binary") -> list[PixelMetric]:
    return [PixelMetric(kind, target=target) for kind in KINDS]


# --- instance metrics (numpy) --------------------------------------------------------


def overlaps(reference: np.ndarray, predicted: np.ndarray):
    """Reference ids, predicted ids, and the intersection counts [n_ref, n_pred] of two label images."""
    reference, predicted = np.asarray(reference).ravel(), np.asarray(predicted).ravel()
    ref_ids, ref_index = np.unique(reference, return_inverse=True)
    pred_ids, pred_index = np.unique(predicted, return_inverse=True)
    counts = np.zeros((len(ref_ids), len(pred_ids)), np.int64)
    np.add.at(counts, (ref_index, pred_index), 1)
    keep_ref, keep_pred = ref_ids != 0, pred_ids != 0
    sizes_ref, sizes_pred = counts.sum(axis=1)[keep_ref], counts.sum(axis=0)[keep_pred]
    return ref_ids[keep_ref], pred_ids[keep_pred], counts[np.ix_(keep_ref, keep_pred)], sizes_ref, sizes_pred


def seg_jaccards(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per reference object, the CTC SEG Jaccard index.

    The predicted object covering more than half of the reference object is its
    match (there is at most one); the value is their intersection over union,
    0 when no predicted object covers more than half.
    """
    _, _, counts, sizes_ref, sizes_pred = overlaps(reference, predicted)
    if not len(sizes_ref):
        return np.zeros(0)
    if not len(sizes_pred):
        return np.zeros(len(sizes_ref))
    union = sizes_ref[:, None] + sizes_pred[None, :] - counts
    jaccard = counts / np.maximum(union, 1)
    matched = counts > 0.5 * sizes_ref[:, None]
    return np.where(matched, jaccard, 0.0).max(axis=1)


def seg_score(references, predictions) -> float:
    """The CTC SEG measure: mean SEG Jaccard over every reference object of every frame."""
    values = np.concatenate([seg_jaccards(r, p) for r, p in zip(references, predictions)] or [np.zeros(0)])
    return float(values.mean()) if values.size else 0.0


def detection_counts(reference: np.ndarray, predicted: np.ndarray, threshold: float = 0.5) -> dict:
    """True positives (pairs with IoU above `threshold`, one-to-one for 0.5 and up), false positives, negatives."""
    _, _, counts, sizes_ref, sizes_pred = overlaps(reference, predicted)
    if len(sizes_ref) and len(sizes_pred):
        iou = counts / np.maximum(sizes_ref[:, None] + sizes_pred[None, :] - counts, 1)
        true_positive = int(np.sum(iou > threshold))
    else:
        true_positive = 0
    return {"tp": true_positive, "fp": len(sizes_pred) - true_positive, "fn": len(sizes_ref) - true_positive}


def detection_scores(references, predictions) -> dict:
    """Object detection at IoU 0.5 pooled over frames: tp, fp, fn, precision, recall and F1."""
    counts = {"tp": 0, "fp": 0, "fn": 0}
    for reference, predicted in zip(references, predictions):
        for key, value in detection_counts(reference, predicted).items():
            counts[key] += value
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {**counts, "precision": tp / (tp + fp) if tp else 0.0, "recall": tp / (tp + fn) if tp else 0.0,
            "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0}
