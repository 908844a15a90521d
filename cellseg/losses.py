"""Training losses with per-pixel weights, for each target of `cellseg.targets`.

The target `y_true` packs the mask, the weights and the target's own channels
(`target_ops.pack`: `[..., 0]` mask in {0, 1}, `[..., 1]` weight, then the class id
or the two distance maps), so Keras' loss plumbing (and its scaling under
tf.distribute) carries the weight map with the target.

- binary: weighted binary cross-entropy, mean of `weight * BCE(mask,
  sigmoid(logits))` with the U-Net weight map (class balance + border term),
  plus the Tversky loss (Salehi et al., 2017): `1 - TP / (TP + alpha FP + beta
  FN)` on probabilities over the whole batch; beta > alpha costs a missed cell
  pixel more than a false one, which suits sparse foreground. Dice is alpha =
  beta = 0.5;
- three_class: weighted softmax cross-entropy over background / interior /
  boundary (class-balanced weights + border term), plus the Tversky (or Dice)
  term twice: on the interior, whose connected parts become the seeds of the
  cells, and on the whole cell (interior or boundary), whose extent the
  cross-entropy alone leaves blurred;
- distance: weighted mean squared error of the cell and neighbour distances.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from cellseg import target_ops, targets

KINDS = ("bce_tversky", "bce", "dice", "tversky")


@dataclasses.dataclass(frozen=True)
class Config:
    """The training objective: which terms (`loss`, one of `KINDS`) and their weights."""

    loss: str = "bce_tversky"
    # Dice (alpha = beta): with class weights already favouring the cells, a Tversky term that costs
    # missed pixels more (0.3 / 0.7) painted cells too fat (real CHO nuclei: SEG 0.883, Dice 0.912).
    tversky_alpha: float = 0.5  # weight of false positives
    tversky_beta: float = 0.5  # weight of false negatives
    bce_weight: float = 1.0
    overlap_weight: float = 1.0

    def __post_init__(self):
        if self.loss not in KINDS:
            raise ValueError(f"unknown --loss={self.loss}; expected one of {', '.join(KINDS)}")

    def for_target(self, target: str) -> SegmentationLoss:
        return SegmentationLoss(self.loss, self.tversky_alpha, self.tversky_beta, self.bce_weight,
                                self.overlap_weight, target)


def weighted_mean(values, weights):
    """Sum of weight x value over the pixels of weight above 0, divided by their count.

    Every real pixel weighs more than 0, so this is the mean over the batch's
    pixels; padding (weight 0) neither adds nor counts.
    """
    counted = ops.sum(ops.cast(weights > 0, "float32"))
    return ops.divide_no_nan(ops.sum(weights * values), counted)


def weighted_bce(mask, logits, weights):
    """Mean over pixels of weight x binary cross-entropy (from logits); padding (weight 0) skipped."""
    return weighted_mean(ops.binary_crossentropy(mask, logits, from_logits=True), weights)


def tversky(mask, probabilities, alpha: float = Config.tversky_alpha, beta: float = Config.tversky_beta,
            smooth: float = 1.0, counted=None):
    """1 - Tversky index over the batch; `alpha` weighs false positives, `beta` false negatives.

    `counted` (1 on pixels that count, 0 on padding) masks padding out.
    """
    if counted is not None:
        mask, probabilities = mask * counted, probabilities * counted
    true_positive = ops.sum(mask * probabilities)
    false_positive = ops.sum((1.0 - mask) * probabilities)
    false_negative = ops.sum(mask * (1.0 - probabilities))
    index = (true_positive + smooth) / (true_positive + alpha * false_positive + beta * false_negative + smooth)
    return 1.0 - index


@keras.saving.register_keras_serializable(package="cellseg")
class SegmentationLoss(keras.losses.Loss):
    """`kind`: bce_tversky (default), bce, dice or tversky (cross-entropy and overlap
    terms; a distance target has its regression loss whatever the kind);
    `y_true` is `target_ops.pack`'s [..., K]."""

    def __init__(self, kind: str = Config.loss, alpha: float = Config.tversky_alpha,
                 beta: float = Config.tversky_beta,
                 bce_weight: float = 1.0, overlap_weight: float = 1.0, target: str = targets.DEFAULT,
                 name: str = "segmentation_loss", **kwargs):
        if kind not in KINDS:
            raise ValueError(f"unknown loss {kind!r}; expected one of {KINDS}")
        super().__init__(name=name, **kwargs)
        self.kind, self.alpha, self.beta = kind, alpha, beta
        self.bce_weight, self.overlap_weight = bce_weight, overlap_weight
        self.target = targets.check(target)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        logits = ops.cast(y_pred, "float32")
        mask, weights = y_true[..., 0:1], y_true[..., 1:2]
        if targets.get(self.target).activation == "linear":  # the distance maps: a regression
            squared = ops.sum(ops.square(logits - y_true[..., 2:4]), axis=-1, keepdims=True)
            loss = weighted_mean(squared, weights)
        else:
            loss = self._classification(y_true, logits, mask, weights)
        # One value per sample, not a scalar: Keras divides a reduced loss by the
        # replica count under tf.distribute, but passes a scalar through unscaled,
        # which would multiply the gradient by the number of replicas.
        return ops.broadcast_to(loss, ops.shape(logits)[:1])

    def _classification(self, y_true, logits, mask, weights):
        if targets.get(self.target).activation == "softmax":  # background / interior / boundary
            ids = ops.cast(y_true[..., 2], "int32")
            cross_entropy = weighted_mean(
                ops.sparse_categorical_crossentropy(ids, logits, from_logits=True), weights[..., 0])
            softmax = ops.softmax(logits, axis=-1)
            interior = ops.cast(ids == targets.INTERIOR, "float32")[..., None]
            # Overlap terms on the interior (its parts seed the cells) and on the whole cell.
            pairs = [(interior, softmax[..., targets.INTERIOR:targets.INTERIOR + 1]),
                     (mask, 1.0 - softmax[..., targets.BACKGROUND:targets.BACKGROUND + 1])]
        else:
            cross_entropy = weighted_bce(mask, logits, weights)
            pairs = [(mask, ops.sigmoid(logits))]
        loss = 0.0
        if self.kind in ("bce_tversky", "bce"):
            loss += self.bce_weight * cross_entropy
        alpha, beta = (0.5, 0.5) if self.kind == "dice" else (self.alpha, self.beta)
        if self.kind != "bce" and self.overlap_weight:  # weight 0 (planned on dense cells): cross-entropy alone
            counted = target_ops.counted(y_true)
            for truth, probabilities in pairs:
                loss += self.overlap_weight * tversky(truth, probabilities, alpha, beta, counted=counted)
        return loss

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "alpha": self.alpha, "beta": self.beta,
                "bce_weight": self.bce_weight, "overlap_weight": self.overlap_weight, "target": self.target}
