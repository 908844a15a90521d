"""The input pipeline in numpy, read without TensorFlow: training on JAX (`cellseg.inputs`).

It gives what the tf.data pipeline (`cellseg.data`) gives, from the same
records (`cellseg.records`): endless shuffled batches of random patches, about
one per patch-sized area of each frame, a share of them centred near a cell;
and the fixed validation tiles, padded with zero-weight tiles to full batches,
the same tiles in the same order every epoch. Batches are `(image, labels,
maps)` numpy arrays, `[batch, patch, patch, C]`, as `cellseg.data` describes
them; augmentation happens on the device, in the training step.

A background thread makes the next batches while the device runs a step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import keras
import numpy as np

from cellseg import records as records_lib, target_ops
from cellseg.records import Records

PREFETCH = 4  # batches made ahead of the training step
CACHE_BYTES = 2**31  # training frames kept decoded in memory after the first pass, when they fit


def training_batches(records: Records, patch_size: int, batch_size: int, seed: int | None = None,
                     shuffle_buffer: int = 256, distances: bool = False,
                     foreground_share: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless shuffled batches of random patches from the training frames (`data.training_dataset`'s sampling:
    frames smaller than a patch are reflect-padded; about `foreground_share` of each frame's patches centred
    on a random cell pixel, give or take a quarter patch). The same `seed` gives the same stream."""
    rng = np.random.default_rng(seed)
    buffer, batch = [], []
    for frame in _endless_frames(records, rng, distances):
        for patch in random_patches(frame, patch_size, rng, foreground_share):
            if len(buffer) < shuffle_buffer:
                buffer.append(patch)
                continue
            index = rng.integers(len(buffer))
            batch.append(buffer[index])
            buffer[index] = patch
            if len(batch) == batch_size:
                yield _stacked(batch)
                batch = []


def training_input(records: Records, patch_size: int, global_batch: int, seed: int, shuffle_buffer: int = 256,
                   distances: bool = False, foreground_share: float = 0.0) -> Iterator:
    """`training_batches` of `global_batch`, made ahead in a background thread."""
    return prefetched(training_batches(records, patch_size, global_batch, seed, shuffle_buffer, distances,
                                       foreground_share))


def _endless_frames(records: Records, rng: np.random.Generator, distances: bool):
    """(image, labels, maps) of the training frames, pass after pass, the shards in a new order each pass;
    decoded once and kept when they fit in CACHE_BYTES."""
    cache, size, first = [], 0, True
    while True:
        if not first and cache is not None:
            for index in rng.permutation(len(cache)):
                yield cache[index]
            continue
        for shard in rng.permutation(len(records.train)):
            for frame in records_lib.frames(_one_shard(records, shard), "train"):
                arrays = records_lib.inputs(frame, distances)
                if first and cache is not None:
                    size += sum(array.nbytes for array in arrays)
                    cache = cache if size <= CACHE_BYTES else None
                    if cache is not None:
                        cache.append(arrays)
                yield arrays
        if first and not size:
            raise ValueError(f"{records.directory}: the training split holds no frames")
        first = False


def _one_shard(records: Records, index: int) -> Records:
    return Records(records.directory, records.description, records.train[index:index + 1], (), records.scale)


def random_patches(arrays, patch_size: int, rng: np.random.Generator, foreground_share: float = 0.0):
    """About one random patch per patch-sized area of a frame's [H, W, C] arrays, as tuples of windows; about
    `foreground_share` of them centred near a random cell pixel."""
    arrays = padded(arrays, patch_size)
    height, width = arrays[0].shape[:2]
    count = max(1, round(height * width / patch_size**2))
    corners = np.stack([rng.integers(0, height - patch_size + 1, count),
                        rng.integers(0, width - patch_size + 1, count)], axis=1)
    if foreground_share > 0:
        cells = np.argwhere(arrays[1][..., 0] > 0)
        share = round(foreground_share * count) if len(cells) else 0
        if share:
            picked = cells[rng.integers(0, len(cells), share)]
            jitter = rng.integers(-(patch_size // 4), patch_size // 2 + 1 - patch_size // 4, (share, 2))
            corners[:share] = np.clip(picked + jitter - patch_size // 2, 0, [height - patch_size, width - patch_size])
    return [windows(arrays, row, col, patch_size) for row, col in corners]


def padded(arrays, size: int):
    """[H, W, C] arrays mirror-padded on the bottom and right up to `size` where smaller (as `data._pad_to`)."""
    height, width = arrays[0].shape[:2]
    pad = ((0, max(size - height, 0)), (0, max(size - width, 0)), (0, 0))
    return [np.pad(array, pad, mode="symmetric") for array in arrays] if pad[0][1] or pad[1][1] else list(arrays)


def windows(arrays, row: int, col: int, size: int):
    return tuple(array[row:row + size, col:col + size] for array in arrays)


def validation_tiles(records: Records, patch_size: int, distances: bool = False):
    """The validation tiles (image, labels, maps), one by one, in `data.validation_tiles`' fixed order."""
    if not records.val:
        raise ValueError(f"{records.directory}: no val-* shards; convert with --val_fraction or --val_sequences")
    for frame in records_lib.frames(records, "val"):
        arrays = padded(records_lib.inputs(frame, distances), patch_size)
        height, width = arrays[0].shape[:2]
        for row in records_lib.tile_starts(height, patch_size):
            for col in records_lib.tile_starts(width, patch_size):
                yield windows(arrays, row, col, patch_size)


def validation_batches(records: Records, patch_size: int, batch_size: int, steps: int, distances: bool = False,
                       tile_count: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The first `tile_count` validation tiles in `steps` batches of `batch_size`, padded with tiles of
    `target_ops.PADDING_LABEL` (zero weight: the loss and the metrics skip them)."""
    if tile_count is None:
        tile_count = records_lib.validation_tile_count(records, patch_size)
    tiles = []
    for tile in validation_tiles(records, patch_size, distances):
        if len(tiles) == tile_count:
            break
        tiles.append(tile)
    image, labels, maps = tiles[0]
    padding = (np.zeros_like(image), np.full_like(labels, target_ops.PADDING_LABEL), np.zeros_like(maps))
    tiles += [padding] * (steps * batch_size - len(tiles))
    return [_stacked(tiles[start:start + batch_size]) for start in range(0, steps * batch_size, batch_size)]


class Batches(keras.utils.PyDataset):
    """Fixed batches as Keras reads them: the same batches, in order, every epoch."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def validation_input(strategy, records: Records, patch_size: int, per_replica_batch_size: int,
                     distances: bool = False, tile_count: int | None = None):
    """(validation batches, steps per pass) for a strategy on one host: global batches of
    `per_replica_batch_size` per replica, so that every device gets a full share at every step."""
    if tile_count is None:
        tile_count = records_lib.validation_tile_count(records, patch_size)
    replicas = strategy.num_replicas_in_sync
    steps = records_lib.validation_steps(tile_count, per_replica_batch_size, 1, replicas)
    return Batches(validation_batches(records, patch_size, per_replica_batch_size * replicas, steps, distances,
                                      tile_count)), steps


def validation_set(records: Records, patch_size: int, batch_size: int, distances: bool = False,
                   tile_count: int | None = None):
    """(the validation tiles in batches of `batch_size` for one device, steps per pass)."""
    if tile_count is None:
        tile_count = records_lib.validation_tile_count(records, patch_size)
    steps = records_lib.validation_steps(tile_count, batch_size)
    return Batches(validation_batches(records, patch_size, batch_size, steps, distances, tile_count)), steps


def validation_batch(records: Records, patch_size: int, count: int, distances: bool = False,
                     tile_count: int | None = None):
    """The first `count` validation tiles as one batch (image, labels, maps), padding tiles at the end when
    there are fewer."""
    return validation_batches(records, patch_size, count, 1, distances, min(count, tile_count or count))[0]


def prefetched(batches: Iterator, size: int = PREFETCH) -> Iterator:
    """`batches` made ahead in a daemon thread; an error there is raised here, at the batch it stopped at."""
    made = queue.Queue(size)

    def produce():
        try:
            for batch in batches:
                made.put(batch)
        except BaseException as error:  # handed to the consumer, raised there
            made.put(_Failed(error))

    threading.Thread(target=produce, name="cellseg-batches", daemon=True).start()
    while True:
        batch = made.get()
        if isinstance(batch, _Failed):
            raise batch.error
        yield batch


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _stacked(items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, labels, maps = zip(*items)
    return (np.stack(image).astype(np.float32), np.stack(labels).astype(np.int32), np.stack(maps).astype(np.float32))
