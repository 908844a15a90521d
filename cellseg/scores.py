"""Scores of predicted label images against references, in numpy (no TensorFlow).

The Cell Tracking Challenge's SEG measure, object detection at IoU 0.5, and the
pixel scores of a confusion count (`PIXEL_RATIOS`, which the Keras metric of
`cellseg.metrics` computes from the same formulas during training).
"""

from __future__ import annotations

import numpy as np

# Each pixel score as (numerator, denominator) of the confusion counts tp, fp, fn, tn.
PIXEL_RATIOS = {
    "dice": lambda tp, fp, fn, tn: (2 * tp, 2 * tp + fp + fn),
    "iou": lambda tp, fp, fn, tn: (tp, tp + fp + fn),
    "precision": lambda tp, fp, fn, tn: (tp, tp + fp),
    "recall": lambda tp, fp, fn, tn: (tp, tp + fn),
    "pixel_accuracy": lambda tp, fp, fn, tn: (tp + tn, tp + fp + fn + tn),
}


def confusion(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """[tp, fp, fn, tn] pixel counts of cell (label above 0) against background."""
    truth, guess = np.asarray(reference) > 0, np.asarray(predicted) > 0
    return np.array([np.sum(truth & guess), np.sum(~truth & guess), np.sum(truth & ~guess), np.sum(~truth & ~guess)],
                    np.float64)


def pixel_scores(counts) -> dict:
    """Every score of `PIXEL_RATIOS` from [tp, fp, fn, tn]; 0 where its denominator is 0."""
    scores = {}
    for name, ratio in PIXEL_RATIOS.items():
        numerator, denominator = ratio(*counts)
        scores[name] = float(numerator / denominator) if denominator else 0.0
    return scores


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
