import numpy as np
import pytest
from keras import ops

from cellseg import losses, preprocess, target_ops


def numpy_bce(mask, logits):
    p = 1 / (1 + np.exp(-logits))
    return -(mask * np.log(p) + (1 - mask) * np.log(1 - p))


def test_weighted_bce_and_tversky_match_numpy():
    rng = np.random.default_rng(0)
    mask = (rng.random((2, 8, 8, 1)) > 0.7).astype(np.float32)
    logits = rng.normal(0, 2, mask.shape).astype(np.float32)
    weights = rng.random(mask.shape).astype(np.float32) * 5
    expected = np.mean(weights * numpy_bce(mask, logits))
    assert float(losses.weighted_bce(mask, logits, weights)) == pytest.approx(expected, rel=1e-5)
    p = 1 / (1 + np.exp(-logits))
    tp, fp, fn = (mask * p).sum(), ((1 - mask) * p).sum(), (mask * (1 - p)).sum()
    expected_tversky = 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)
    assert float(losses.tversky(mask, p, 0.3, 0.7)) == pytest.approx(expected_tversky, rel=1e-5)
    dice = 1 - (2 * tp + 2) / (2 * tp + fp + fn + 2)  # alpha = beta = 0.5 is the soft Dice loss
    assert float(losses.tversky(mask, p, 0.5, 0.5)) == pytest.approx(dice, rel=1e-5)


def packed(mask, weights):
    """A binary target's `y_true` (target_ops.pack): mask and weights as two channels."""
    return ops.convert_to_tensor(np.concatenate([mask, np.broadcast_to(weights, mask.shape)], -1), "float32")


def mask_with_fraction(fraction, size=40):
    mask = np.zeros((1, size, size, 1), np.float32)
    mask.reshape(-1)[: int(round(fraction * size * size))] = 1
    return mask


def balanced_weights(mask):
    background, foreground = preprocess.softened_weights([1.0 - mask.mean(), mask.mean()], power=1.0)
    return np.where(mask > 0, foreground, background).astype(np.float32)


@pytest.mark.parametrize("kind", losses.KINDS)
def test_perfect_prediction_costs_nearly_nothing(kind):
    mask = mask_with_fraction(0.3)
    logits = np.where(mask > 0, 20.0, -20.0).astype(np.float32)
    loss = losses.SegmentationLoss(kind, target="binary")(packed(mask, balanced_weights(mask)), logits)
    assert float(loss) < 0.01


def test_all_background_is_punished_on_sparse_cells_as_on_dense_ones():
    """Class balance: a blank prediction scores 95 % pixel accuracy on a 5 % mask, yet costs as
    much as on a 50 % mask; unweighted cross-entropy would let it off ten times cheaper."""
    loss = losses.SegmentationLoss(target="binary")
    blank = lambda mask: ops.full(mask.shape, -4.0)  # noqa: E731
    sparse, dense = mask_with_fraction(0.05), mask_with_fraction(0.5)
    sparse_loss = float(loss(packed(sparse, balanced_weights(sparse)), blank(sparse)))
    dense_loss = float(loss(packed(dense, balanced_weights(dense)), blank(dense)))
    assert sparse_loss == pytest.approx(dense_loss, rel=0.02)
    sure = ops.convert_to_tensor(np.where(sparse > 0, 4.0, -4.0), "float32")
    perfect = float(loss(packed(sparse, balanced_weights(sparse)), sure))
    assert sparse_loss > 5 * perfect
    unweighted_sparse = numpy_bce(sparse, np.full(sparse.shape, -4.0)).mean()
    unweighted_dense = numpy_bce(dense, np.full(dense.shape, -4.0)).mean()
    assert unweighted_sparse < 0.2 * unweighted_dense


@pytest.mark.tensorflow  # tf.distribute's replicas
def test_loss_is_scaled_per_replica_so_gradients_do_not_grow_with_replicas():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")][:2])
    mask = mask_with_fraction(0.2)
    y_true, logits = packed(mask, balanced_weights(mask)), tf.constant(np.zeros(mask.shape, np.float32))
    single = float(losses.SegmentationLoss(target="binary")(y_true, logits))
    with strategy.scope():
        loss = losses.SegmentationLoss(target="binary")
    per_replica = strategy.run(lambda: loss(y_true, logits))
    values = [float(v) for v in strategy.experimental_local_results(per_replica)]
    assert values == pytest.approx([single / 2, single / 2], rel=1e-5)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.SegmentationLoss("hinge")


def test_the_overlap_weight_scales_the_dice_term_and_zero_leaves_cross_entropy_alone():
    rng = np.random.default_rng(1)
    mask = (rng.random((2, 8, 8, 1)) > 0.8).astype(np.float32)
    logits = rng.normal(0, 2, mask.shape).astype(np.float32)
    weights = (rng.random(mask.shape) * 3 + 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-logits))
    tp, fp, fn = (mask * p).sum(), ((1 - mask) * p).sum(), (mask * (1 - p)).sum()
    dice = 1 - (tp + 1) / (tp + 0.5 * fp + 0.5 * fn + 1)
    bce = np.mean(weights * numpy_bce(mask, logits))
    y_true = packed(mask, weights)
    for weight in (0.0, 0.25, 1.0):
        loss = losses.SegmentationLoss("bce_tversky", overlap_weight=weight, target="binary")(y_true, logits)
        assert float(ops.mean(loss)) == pytest.approx(bce + weight * dice, rel=1e-5)
    alone = losses.SegmentationLoss("bce", target="binary")(y_true, logits)
    assert float(ops.mean(alone)) == pytest.approx(bce, rel=1e-5)
