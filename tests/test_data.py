import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from cellseg import augment, ctc, data, records as records_lib, preprocess, schema, target_ops, targets, tiff


def frame_arrays(fluo_dataset, sequence, index):
    """What the pipeline should serve for a frame, computed in numpy from its TIFFs."""
    frame = next(f for f in ctc.discover(fluo_dataset).frames if (f.sequence, f.index) == (sequence, index))
    mask_path, _ = frame.truth()
    labels = tiff.read(mask_path)
    image = schema.dequantize(schema.quantize(preprocess.percentile_stretch(tiff.read(frame.image))[0]))
    border = preprocess.border_weight_map(labels).astype(np.float16).astype(np.float32)
    return image, labels, border


def test_open_records_reads_description_and_class_weights(fluo_records):
    records = records_lib.open_records(fluo_records)
    assert len(records.train) >= 1 and len(records.val) >= 1
    fraction = records.description["foreground_fraction"]
    assert records.class_weights("binary", power=1.0) == pytest.approx((0.5 / (1 - fraction), 0.5 / fraction))
    assert records.class_weights("distance") == records.class_weights("binary")
    background, interior, boundary = records.description["class_fractions"]
    assert background + interior + boundary == pytest.approx(1.0) and boundary > 0
    weights = records.class_weights("three_class", power=1.0)
    assert weights == pytest.approx((1 / (3 * background), 1 / (3 * interior), 1 / (3 * boundary)))
    # The default softens them: square roots of the balanced ones, mean 1 over the pixels.
    roots = [w**0.5 for w in weights]
    scale = sum(f * r for f, r in zip((background, interior, boundary), roots))
    assert records.class_weights("three_class") == pytest.approx(tuple(r / scale for r in roots))
    assert records.has_distances


def test_open_records_refuses_missing_or_foreign_data(fluo_records, tmp_path):
    with pytest.raises(ValueError, match="no dataset.json"):
        records_lib.open_records(str(tmp_path))
    copy = tmp_path / "copy"
    shutil.copytree(fluo_records, copy)
    description = json.loads((copy / "dataset.json").read_text())
    description["schema_version"] = 9
    (copy / "dataset.json").write_text(json.dumps(description))
    with pytest.raises(schema.SchemaError, match="schema version 9"):
        records_lib.open_records(str(copy))


def test_training_batches_have_declared_shapes_and_are_crops_of_frames(fluo_records, fluo_dataset):
    records = records_lib.open_records(fluo_records)
    frames = {t: frame_arrays(fluo_dataset, "01", t) for t in range(4)}
    dataset = data.training_dataset(records, patch_size=64, batch_size=3, seed=0)
    assert dataset.element_spec == (tf.TensorSpec([3, 64, 64, 1], tf.float32), tf.TensorSpec([3, 64, 64, 1], tf.int32),
                                    tf.TensorSpec([3, 64, 64, 1], tf.float32))
    for images, batch_labels, maps in dataset.take(2):
        for image, patch_labels, border_term in zip(images.numpy()[..., 0], batch_labels.numpy()[..., 0],
                                                    maps.numpy()[..., 0]):
            found = False
            for frame_image, labels, border in frames.values():
                for r in range(96 - 64 + 1):
                    for c in range(96 - 64 + 1):
                        if np.array_equal(frame_image[r:r + 64, c:c + 64], image):
                            np.testing.assert_array_equal(patch_labels, labels[r:r + 64, c:c + 64])
                            np.testing.assert_allclose(border_term, border[r:r + 64, c:c + 64] - 1, atol=1e-6)
                            found = True
                            break
                    if found:
                        break
                if found:
                    break
            assert found, "a training patch is not a crop of any training frame"


def test_seeded_stream_repeats_and_another_seed_differs(fluo_records):
    records = records_lib.open_records(fluo_records)
    first = [b[0].numpy() for b in data.training_dataset(records, 48, 4, seed=5).take(3)]
    again = [b[0].numpy() for b in data.training_dataset(records, 48, 4, seed=5).take(3)]
    other = [b[0].numpy() for b in data.training_dataset(records, 48, 4, seed=6).take(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_validation_tiles_cover_each_frame_in_a_fixed_order(fluo_records, fluo_dataset):
    records = records_lib.open_records(fluo_records)
    assert records_lib.validation_tile_count(records, 64) == 4 * 4  # 96 px needs 2 tiles of 64 per axis, starts 0 and 32
    assert records_lib.validation_steps(16, 5) == 4
    served = [x for batch in data.validation_dataset(records, 64, 5).take(4) for x in zip(*[t.numpy() for t in batch])]
    tiles, padding = served[:16], served[16:]
    # The last batch is filled with padding tiles: zero image, every label PADDING_LABEL.
    assert len(padding) == 4 and all(not image.any() and (labels == target_ops.PADDING_LABEL).all()
                                     for image, labels, _ in padding)
    assert not any((labels == target_ops.PADDING_LABEL).all() for _, labels, _ in tiles)
    starts = [(0, 0), (0, 32), (32, 0), (32, 32)]
    frames = [frame_arrays(fluo_dataset, "02", t) for t in range(4)]
    seen = set()
    for group in range(4):  # shards keep the order the converter wrote, not frame order
        first = tiles[4 * group][0][..., 0]
        t = next(t for t, (image, _, _) in enumerate(frames) if np.array_equal(image[:64, :64], first))
        seen.add(t)
        image, labels, _ = frames[t]
        for (r, c), (tile, mask, _) in zip(starts, tiles[4 * group:4 * group + 4]):
            np.testing.assert_array_equal(tile[..., 0], image[r:r + 64, c:c + 64])
            np.testing.assert_array_equal(mask[..., 0], labels[r:r + 64, c:c + 64])
    assert seen == {0, 1, 2, 3}
    # The stream repeats, one pass per validation_steps batches, the same tiles each pass.
    again = [x for batch in data.validation_dataset(records, 64, 5).skip(4).take(4)
             for x in zip(*[t.numpy() for t in batch])]
    assert len(again) == len(served) and all(np.array_equal(a[0], b[0]) for a, b in zip(served, again))


def test_distance_maps_travel_with_the_tiles(fluo_records, fluo_dataset):
    records = records_lib.open_records(fluo_records)
    dataset = data.validation_dataset(records, 96, 4, distances=True)
    assert dataset.element_spec[2].shape[-1] == 3
    _, labels, maps = next(iter(dataset))
    for tile_labels, tile_maps in zip(labels.numpy()[..., 0], maps.numpy()):
        for channel, expected in enumerate(targets.distance_maps(tile_labels), start=1):
            np.testing.assert_array_equal(tile_maps[..., channel], expected.astype(np.float16).astype(np.float32))


def test_tile_starts_are_evenly_spread_and_end_at_the_border():
    assert records_lib.tile_starts(96, 64).tolist() == [0, 32]
    assert records_lib.tile_starts(64, 64).tolist() == [0]
    assert records_lib.tile_starts(40, 64).tolist() == [0]
    assert records_lib.tile_starts(300, 128).tolist() == [0, 86, 172]


def test_frames_smaller_than_a_patch_are_mirror_padded(fluo_records, fluo_dataset):
    records = records_lib.open_records(fluo_records)
    tile = next(iter(data.validation_dataset(records, 160, 1)))[0].numpy()[0, ..., 0]
    padded = [np.pad(frame_arrays(fluo_dataset, "02", t)[0], ((0, 64), (0, 64)), mode="symmetric") for t in range(4)]
    assert any(np.array_equal(tile, expected) for expected in padded)
    tiny = data._pad_to([tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3, 1))], 8)[0].numpy()[..., 0]
    np.testing.assert_array_equal(tiny, np.pad(np.arange(6.0).reshape(2, 3), ((0, 6), (0, 5)), mode="symmetric"))


def test_auto_shard_policy_follows_shard_count():
    policy = tf.data.experimental.AutoShardPolicy
    assert data.auto_shard_policy(shards=8, num_workers=2) == policy.FILE
    assert data.auto_shard_policy(shards=1, num_workers=2) == policy.DATA
    assert data.auto_shard_policy(shards=1, num_workers=1) == policy.FILE


def test_pipeline_and_augmentation_run_under_a_two_replica_mirrored_strategy(fluo_records):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    strategy = tf.distribute.MirroredStrategy(devices)
    records = records_lib.open_records(fluo_records)
    dataset = strategy.experimental_distribute_dataset(data.training_dataset(records, 48, batch_size=4, seed=1))

    @tf.function
    def step(batch, seed):
        def on_replica(images, masks, weights):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            replica_seed = tf.stack([seed, tf.cast(replica, tf.int64)])
            images, masks, weights = augment.augment(images, masks, weights, replica_seed, augment.Config())
            return tf.reduce_sum(masks), tf.shape(images)

        return strategy.run(on_replica, args=batch)

    totals, shapes = step(next(iter(dataset)), tf.constant(3, tf.int64))
    per_replica_shapes = [s.numpy().tolist() for s in strategy.experimental_local_results(shapes)]
    assert per_replica_shapes == [[2, 48, 48, 1], [2, 48, 48, 1]]  # global batch 4 = 2 per replica x 2
    assert len(strategy.experimental_local_results(totals)) == 2


def test_validation_is_bounded_on_large_splits(fluo_records, monkeypatch):
    records = records_lib.open_records(fluo_records)
    every = records_lib.validation_tile_count(records, 32)  # 96 px frames: 9 tiles of 32 each
    assert every == 9 * records.description["counts"]["val"]
    monkeypatch.setattr(records_lib, "MAX_VALIDATION_TILES", 10)
    assert records_lib.validation_tile_count(records, 32) == 10
    batches = list(data.validation_dataset(records, 32, 4).take(3))  # 10 tiles and 2 of padding
    padding = np.concatenate([target_ops.is_padding(labels).numpy() for _, labels, _ in batches])
    assert padding.tolist() == [False] * 10 + [True] * 2
    # whole frames: at most the pixels asked for, one frame at least
    assert len(records_lib.validation_sample(records, 8, max_pixels=96 * 96)) == 1
    assert len(records_lib.validation_sample(records, 8, max_pixels=1)) == 1
    assert len(records_lib.validation_sample(records, 8)) == records.description["counts"]["val"]
