import numpy as np
import pytest
from keras import ops

from cellseg import metrics


def confusion(mask, logits):
    truth, predicted = mask > 0.5, logits > 0
    return [np.sum(truth & predicted), np.sum(~truth & predicted), np.sum(truth & ~predicted), np.sum(~truth & ~predicted)]


def test_metrics_equal_numpy_over_an_epoch_of_two_batches():
    rng = np.random.default_rng(1)
    masks = [(rng.random((2, 16, 16, 1)) > 0.8).astype(np.float32) for _ in range(2)]
    logits = [rng.normal(0, 1, m.shape).astype(np.float32) for m in masks]
    tp, fp, fn, tn = np.sum([confusion(m, l) for m, l in zip(masks, logits)], axis=0)
    expected = {"dice": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn), "precision": tp / (tp + fp),
                "recall": tp / (tp + fn), "pixel_accuracy": (tp + tn) / (tp + fp + fn + tn)}
    for metric in metrics.pixel_metrics("binary"):
        for m, l in zip(masks, logits):
            metric.update_state(np.concatenate([m, np.ones_like(m)], -1), ops.convert_to_tensor(l))
        assert float(metric.result()) == pytest.approx(expected[metric.name], rel=1e-6)
        metric.reset_state()
        assert float(metric.result()) == 0.0


def test_blank_prediction_has_high_accuracy_and_zero_dice():
    mask = np.zeros((1, 10, 10, 1), np.float32)
    mask[0, :7, :1] = 1  # 7 % cells
    values = {}
    for metric in metrics.pixel_metrics("binary"):
        metric.update_state(np.concatenate([mask, np.ones_like(mask)], -1), ops.full(mask.shape, -3.0))
        values[metric.name] = float(metric.result())
    assert values["pixel_accuracy"] == pytest.approx(0.93)
    assert values["dice"] == values["iou"] == values["recall"] == 0.0
