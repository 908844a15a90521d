"""The numpy input pipeline (training on JAX, read without TensorFlow) against the tf.data pipeline it mirrors."""

import numpy as np
import pytest
import tensorflow as tf

from cellseg import batches, data, records as records_lib, resampling, target_ops


@pytest.fixture(scope="module")
def fluo(fluo_records):
    return records_lib.open_records(fluo_records)


def as_numpy(items):
    return [tuple(np.asarray(t) for t in item) for item in items]


@pytest.mark.parametrize("patch_size", [32, 48, 128])
def test_the_validation_tiles_are_tf_datas_in_the_same_order(fluo, patch_size):
    # 128 px tiles of 96 px frames: mirror-padded as tf.data pads them.
    ours = list(batches.validation_tiles(fluo, patch_size, distances=True))
    theirs = as_numpy(data.validation_tiles(fluo, patch_size, distances=True))
    assert len(ours) == len(theirs) == records_lib.validation_tile_count(fluo, patch_size)
    for mine, tf_tile in zip(ours, theirs):
        for a, b in zip(mine, tf_tile):
            np.testing.assert_array_equal(a, b)


def test_validation_batches_are_full_and_padded_as_tf_datas(fluo):
    tiles = records_lib.validation_tile_count(fluo, 48)
    assert tiles % 3, "the test needs a short last batch"
    ours, steps = batches.validation_set(fluo, 48, 3, tile_count=tiles)
    theirs = as_numpy(data.validation_dataset(fluo, 48, 3, tile_count=tiles).take(steps))
    assert steps == len(ours) == -(-tiles // 3) and all(ours[i][0].shape[0] == 3 for i in range(steps))
    for i, tf_batch in enumerate(theirs):
        for a, b in zip(ours[i], tf_batch):
            np.testing.assert_array_equal(a, b)
    padding = np.concatenate([np.asarray(target_ops.is_padding(ours[i][1])) for i in range(steps)])
    assert padding.tolist() == [False] * tiles + [True] * (3 * steps - tiles)


def test_validation_input_makes_global_batches_of_every_replicas_share(fluo):
    class TwoDevices:
        num_replicas_in_sync = 2

    ours, steps = batches.validation_input(TwoDevices(), fluo, 48, 3, tile_count=8)
    assert steps == len(ours) == 2 and all(ours[i][0].shape[0] == 6 for i in range(steps))
    real = sum(int((~np.asarray(target_ops.is_padding(ours[i][1]))).sum()) for i in range(steps))
    assert real == 8


def test_small_frames_are_mirror_padded_as_tf_data_pads_them():
    frame = np.arange(2 * 3, dtype=np.float32).reshape(2, 3, 1)
    ours = batches.padded([frame], 7)[0]
    theirs = data._pad_to([tf.constant(frame)], 7)[0].numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert ours.shape == (7, 7, 1)


def test_patches_centred_on_cells_hold_a_cell_and_random_ones_are_as_many_as_areas():
    labels = np.zeros((200, 100, 1), np.int32)
    labels[150:153, 10:13] = 1  # one small cell: random patches seldom hold it
    arrays = (np.zeros((200, 100, 1), np.float32), labels, np.zeros((200, 100, 1), np.float32))
    rng = np.random.default_rng(0)
    centred = batches.random_patches(arrays, 32, rng, foreground_share=1.0)
    assert len(centred) == round(200 * 100 / 32**2)
    assert all(patch[1].any() for patch in centred)
    assert all(patch[0].shape == (32, 32, 1) for patch in centred)
    random = [p for _ in range(20) for p in batches.random_patches(arrays, 32, rng)]
    assert sum(patch[1].any() for patch in random) < len(random) / 4
    no_cells = (arrays[0], np.zeros_like(labels), arrays[2])
    assert not any(patch[1].any() for patch in batches.random_patches(no_cells, 32, rng, foreground_share=1.0))


def test_training_batches_are_seeded_full_and_of_the_records(fluo):
    first = list(zip(range(3), batches.training_batches(fluo, 32, 4, seed=7, shuffle_buffer=8)))
    again = list(zip(range(3), batches.training_batches(fluo, 32, 4, seed=7, shuffle_buffer=8)))
    other = next(batches.training_batches(fluo, 32, 4, seed=8, shuffle_buffer=8))
    for (_, a), (_, b) in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first[0][1][0], other[0])
    image, labels, maps = first[0][1]
    assert image.shape == labels.shape == (4, 32, 32, 1) and maps.shape == (4, 32, 32, 1)
    assert (image.dtype, labels.dtype, maps.dtype) == (np.float32, np.int32, np.float32)
    # Every patch is a window of a training frame.
    frames = [records_lib.inputs(frame, False) for frame in records_lib.frames(fluo, "train")]
    for patch in image:
        assert any(_window_of(patch, frame[0]) for frame in frames)


def _window_of(patch, frame):
    size = patch.shape[0]
    for row in range(frame.shape[0] - size + 1):
        for col in np.flatnonzero(frame[row, : frame.shape[1] - size + 1, 0] == patch[0, 0, 0]):
            if np.array_equal(frame[row:row + size, col:col + size], patch):
                return True
    return False


def test_an_error_while_making_batches_is_raised_to_the_reader():
    def failing():
        yield 1
        raise OSError("disk gone")

    made = batches.prefetched(failing())
    assert next(made) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(made)


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_frames_resampled_in_numpy_equal_tf_datas(fluo_records, scale):
    scaled = records_lib.open_records(fluo_records, scale)
    ours = next(records_lib.frames(scaled, "val"))
    theirs = next(iter(data.validation_tiles(scaled, 1024, distances=True)))  # one tile: the padded frame
    height, width = resampling.size_of(96, 96, scale)
    assert ours["image"].shape == (height, width, 1)
    image, labels, maps = records_lib.inputs(ours, True)
    np.testing.assert_allclose(image, np.asarray(theirs[0])[:height, :width], atol=1e-6)
    np.testing.assert_array_equal(labels, np.asarray(theirs[1])[:height, :width])
    np.testing.assert_allclose(maps, np.asarray(theirs[2])[:height, :width], atol=1e-6)


def test_a_training_split_without_frames_is_refused_rather_than_waited_on(fluo):
    empty = records_lib.Records(fluo.directory, fluo.description, (), fluo.val)
    with pytest.raises(ValueError, match="the training split holds no frames"):
        next(batches.training_batches(empty, 32, 4, seed=0))
