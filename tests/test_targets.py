import numpy as np
import pytest
from keras import ops
from skimage import segmentation

from cellseg import augment, losses, metrics, synthetic, target_ops, targets


def two_touching_squares():
    labels = np.zeros((12, 16), np.int32)
    labels[2:8, 2:8] = 1
    labels[2:8, 8:14] = 2  # shares the edge between columns 7 and 8
    return labels


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_two_touching_squares_have_boundary_along_their_edges_and_interior_inside():
    labels = two_touching_squares()
    expected = np.zeros_like(labels)
    expected[2:8, 2:14] = targets.BOUNDARY
    expected[3:7, 3:7] = targets.INTERIOR  # each square's inside, one pixel from every edge
    expected[3:7, 9:13] = targets.INTERIOR
    np.testing.assert_array_equal(targets.three_class_numpy(labels), expected)
    assert (expected[3:7, 7:9] == targets.BOUNDARY).all()  # the shared edge: a pixel of each cell
    on_device = np.asarray(target_ops.classes(ops.convert_to_tensor(labels[None, ..., None])))[0, ..., 0]
    np.testing.assert_array_equal(on_device, expected)


def test_a_cell_cut_by_the_frame_edge_has_no_boundary_there():
    labels = np.zeros((8, 8), np.int32)
    labels[:, :3] = 5
    classes = np.asarray(target_ops.classes(ops.convert_to_tensor(labels[None, ..., None])))[0, ..., 0]
    np.testing.assert_array_equal(classes[:, 2], targets.BOUNDARY)
    np.testing.assert_array_equal(classes[:, :2], targets.INTERIOR)


def test_device_boundaries_of_augmented_labels_equal_scikit_image():
    frames = iter(synthetic.Simulation(synthetic.Config(kind="phc", height=96, width=96, seed=3), 1))
    labels = np.stack([next(frames)[1], next(frames)[1]])[..., None].astype(np.int32)
    assert len(np.unique(labels)) > 4
    image = ops.zeros(labels.shape)
    config = augment.Config(elastic_sigma=6.0, rotation=20.0, scale=0.2)
    _, warped, _ = augment.augment(image, ops.convert_to_tensor(labels), image, ops.convert_to_tensor([4, 2]), config)
    warped = np.asarray(warped)
    assert not np.array_equal(warped, labels)  # augmentation did move things
    on_device = np.asarray(target_ops.classes(ops.convert_to_tensor(warped)))
    for sample, classes in zip(warped[..., 0], on_device[..., 0]):
        expected = np.where(sample > 0, np.where(segmentation.find_boundaries(sample, mode="inner"), 2, 1), 0)
        np.testing.assert_array_equal(classes, expected)
        np.testing.assert_array_equal(targets.three_class_numpy(sample), expected)


def test_cell_distance_is_one_at_a_disc_centre_and_falls_to_its_border():
    labels = disc((41, 41), (20, 20), 12).astype(np.int32)
    cell, neighbour = targets.distance_maps(labels)
    assert cell[20, 20] == 1.0 and cell.max() == 1.0
    profile = cell[20, 20:33]  # centre to the border along a row
    assert np.all(np.diff(profile) < 0)
    assert profile[-1] == pytest.approx(1 / 12, abs=0.02) and cell[20, 33] == 0.0
    assert neighbour.max() == 0.0  # a lone cell has no neighbour


def test_neighbour_distance_is_highest_in_the_gap_between_close_cells():
    labels = np.zeros((40, 70), np.int32)
    labels[disc(labels.shape, (20, 20), 10)] = 1
    labels[disc(labels.shape, (20, 43), 10)] = 2  # a 2-pixel gap at columns 31..32
    labels[disc(labels.shape, (8, 64), 3)] = 3  # far from both
    _, neighbour = targets.distance_maps(labels)
    gap = neighbour[20, 31:33]
    assert neighbour.max() == pytest.approx(gap.max())
    assert neighbour[20, 20] < 0.05 and neighbour[20, 43] < 0.05  # the centres
    assert neighbour[8, 64] == pytest.approx(0.0, abs=1e-6)
    assert neighbour[20, 29] < gap.max() and neighbour[20, 34] < gap.max()


def test_pack_weights_each_class_and_adds_the_border_term_on_background():
    labels = two_touching_squares()[None, ..., None]
    border = np.where(labels == 0, 0.5, 0.0).astype(np.float32)
    cell, neighbour = targets.distance_maps(labels[0, ..., 0])
    maps = np.concatenate([border, cell[None, ..., None], neighbour[None, ..., None]], axis=-1)
    three = np.asarray(target_ops.pack("three_class", labels, maps, (0.2, 1.0, 3.0)))[0]
    classes = targets.three_class_numpy(labels[0, ..., 0])
    np.testing.assert_array_equal(three[..., 0], labels[0, ..., 0] > 0)
    np.testing.assert_allclose(three[..., 1], np.choose(classes, [0.7, 1.0, 3.0]))
    np.testing.assert_array_equal(three[..., 2], classes)
    binary = np.asarray(target_ops.pack("binary", labels, maps[..., :1], (0.2, 4.0)))[0]
    np.testing.assert_allclose(binary[..., 1], np.where(labels[0, ..., 0] > 0, 4.0, 0.7))
    assert binary.shape[-1] == 2
    distance = np.asarray(target_ops.pack("distance", labels, maps, (0.2, 4.0)))[0]
    np.testing.assert_allclose(distance[..., 2], cell)
    np.testing.assert_allclose(distance[..., 3], neighbour)


def test_three_class_loss_equals_numpy_cross_entropy_plus_interior_and_cell_tversky():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, (2, 6, 6))
    weights = rng.uniform(0.5, 2.0, (2, 6, 6))
    logits = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    y_true = np.stack([classes > 0, weights, classes], -1).astype(np.float32)
    loss = float(losses.SegmentationLoss("bce_tversky", 0.3, 0.7, target="three_class")(y_true, logits))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    cross_entropy = np.mean(weights * -np.log(np.take_along_axis(probabilities, classes[..., None], -1)[..., 0]))

    def tversky(truth, p):
        tp, fp, fn = (truth * p).sum(), ((1 - truth) * p).sum(), (truth * (1 - p)).sum()
        return 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1)

    interior = tversky((classes == 1).astype(np.float64), probabilities[..., 1])
    cell = tversky((classes > 0).astype(np.float64), 1 - probabilities[..., 0])
    assert loss == pytest.approx(cross_entropy + interior + cell, rel=1e-5)


def test_distance_loss_is_weighted_squared_error():
    rng = np.random.default_rng(1)
    y_true = rng.uniform(0, 1, (2, 5, 5, 4)).astype(np.float32)
    predicted = rng.uniform(0, 1, (2, 5, 5, 2)).astype(np.float32)
    loss = float(losses.SegmentationLoss(target="distance")(y_true, predicted))
    expected = np.mean(y_true[..., 1] * ((predicted - y_true[..., 2:4]) ** 2).sum(-1))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_metrics_read_each_target_s_cells():
    mask = np.zeros((1, 4, 4, 1), np.float32)
    mask[0, :2] = 1
    y_true = np.concatenate([mask, np.ones_like(mask)], -1)
    three = np.zeros((1, 4, 4, 3), np.float32)
    three[0, :, :, 0] = 5.0  # background everywhere ...
    three[0, :3, :, 2] = 9.0  # ... but boundary wins on the top three rows
    dice = metrics.PixelMetric("dice", target="three_class")
    dice.update_state(y_true, three)
    assert float(dice.result()) == pytest.approx(2 * 8 / (8 + 12))
    distance = np.zeros((1, 4, 4, 2), np.float32)
    distance[0, :2, :, 0] = 0.15  # above the 0.1 mask threshold
    distance[0, 2:, :, 0] = 0.05
    recall = metrics.PixelMetric("precision", target="distance")
    recall.update_state(y_true, distance)
    assert float(recall.result()) == 1.0
