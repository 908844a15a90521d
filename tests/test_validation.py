"""Validation under two replicas and several hosts: full batches everywhere, the metrics of one device."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cellseg import data, records as records_lib, distribute, losses, metrics, segmenter, target_ops

CPUS = [d.name for d in tf.config.list_logical_devices("CPU")][:2]


def tiny_model(patch_size, weights=None):
    model = segmenter.Segmenter(patch_size, base_filters=4, depth=2, seed=2, target="binary")
    model.compile(loss=losses.SegmentationLoss(target="binary"), metrics=metrics.pixel_metrics("binary"))
    model(tf.zeros([1, patch_size, patch_size, 1]))
    if weights is not None:
        model.set_weights(weights)
    return model


@pytest.mark.parametrize("patch_size, per_replica, tiles", [
    (96, 4, 1),  # one tile: replica 1 holds padding only (also replicas - 1)
    (32, 4, 9),  # global batch + 1: the second step is one tile and seven of padding
    (48, 3, 4),  # 4 tiles in batches of 3: replica 1 gets one tile and two of padding
])
def test_two_replicas_see_full_batches_and_give_the_metrics_of_one_device(one_frame_records, patch_size,
                                                                            per_replica, tiles):
    records = records_lib.open_records(one_frame_records)
    assert records_lib.validation_tile_count(records, patch_size) == tiles
    keras.utils.set_random_seed(0)
    reference_model = tiny_model(patch_size)
    # One device, no padding: the tiles in plain batches, the last one short.
    plain = data.validation_tiles(records, patch_size).batch(per_replica)
    plain = plain.apply(tf.data.experimental.assert_cardinality(-(-tiles // per_replica)))
    reference = reference_model.evaluate(plain, return_dict=True, verbose=0)
    assert 0.0 < reference["dice"] < 1.0 and 0.0 < reference["precision"] < 1.0  # not a trivial prediction

    strategy = tf.distribute.MirroredStrategy(CPUS)
    dataset, steps = data.validation_input(strategy, records, patch_size, per_replica)
    assert steps == -(-tiles // (2 * per_replica))
    shapes, real = [], 0
    for _, batch in zip(range(steps), dataset):
        images, labels = (strategy.experimental_local_results(t) for t in batch[:2])
        shapes += [tuple(t.shape) for t in images]
        real += sum(int(tf.reduce_sum(tf.cast(~target_ops.is_padding(t), tf.int32))) for t in labels)
    assert shapes == [(per_replica, patch_size, patch_size, 1)] * (2 * steps)  # never empty, never short
    assert real == tiles

    with strategy.scope():
        mirrored = tiny_model(patch_size, reference_model.get_weights())
    result = mirrored.evaluate(dataset, steps=steps, return_dict=True, verbose=0)
    assert result.keys() == reference.keys()
    for name, value in reference.items():
        assert result[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_each_host_runs_as_many_full_batches_and_together_they_see_every_tile_once(one_frame_records):
    records = records_lib.open_records(one_frame_records)
    every = [image.numpy() for image, _, _ in data.validation_tiles(records, 32)]
    assert len(every) == 9  # odd: one host holds 5 tiles, the other 4
    steps = records_lib.validation_steps(9, 2, pipelines=2, replicas=1)
    assert steps == 3
    seen, batch_counts = [], []
    for pipeline in (0, 1):
        pipeline_set = data.validation_dataset(records, 32, 2, pipelines=2, pipeline=pipeline, tile_count=9)
        batches = list(pipeline_set.take(steps + 1))  # and the first batch of the next pass
        assert [int(images.shape[0]) for images, _, _ in batches] == [2] * (steps + 1)
        batch_counts.append(len(batches))
        for images, labels, _ in batches[:steps]:
            seen += [image for image, pad in zip(images.numpy(), target_ops.is_padding(labels).numpy()) if not pad]
        np.testing.assert_array_equal(batches[steps][0], batches[0][0])  # each pass starts again
    assert batch_counts[0] == batch_counts[1]
    assert len(seen) == 9
    assert all(sum(np.array_equal(image, other) for other in seen) == 1 for image in every)
