"""The tf.data input pipeline: from converted shards to fixed-shape batches.

The host only reads, parses and crops; geometric augmentation happens on the
accelerator, inside the training step (`cellseg.augment`), and what the
network learns is derived from the augmented labels there (`cellseg.targets`).
Batches are tuples `(image, labels, maps)`, each `[batch, patch, patch, C]`:

- `image`: float32, the percentile-stretched frame, in [0, 1];
- `labels`: int32 instance labels (nearest-neighbour warps keep them labels);
- `maps`: float32, channel 0 the U-Net border term (0 on cells; the class
  weights are added on the device), then, with `distances`, the cell and
  neighbour distance maps.

Class weights come from the training split's class fractions in
`dataset.json` (`Records.class_weights`), so a mostly-background dataset does
not collapse to an all-background prediction.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import tensorflow as tf

from cellseg import preprocess, resampling, schema, target_ops, targets


@dataclasses.dataclass(frozen=True)
class Records:
    """A converted dataset: its folder, `dataset.json` and shard lists; its frames are read at `scale`
    (`cellseg.resampling`)."""

    directory: str
    description: dict
    train: tuple[str, ...]
    val: tuple[str, ...]
    scale: float = 1.0

    @property
    def frame_sizes(self) -> list[tuple[int, int]]:
        """The frame sizes of `dataset.json`, at `scale`."""
        return [resampling.size_of(height, width, self.scale) for height, width in self.description["frame_sizes"]]

    @property
    def compression(self) -> str:
        return "GZIP" if self.description["shards"]["compression"] == "gzip" else ""

    def class_weights(self, target: str, power: float = preprocess.CLASS_WEIGHT_POWER) -> tuple[float, ...]:
        """Weights per class of `target` from the training split's class fractions (`preprocess.softened_weights`).

        (background, cell) for binary and distance targets; (background,
        interior, boundary) for three_class.
        """
        return class_weights(self.description, target, power)

    @property
    def has_distances(self) -> bool:
        """Whether the records hold the distance maps (converted with --distance_maps)."""
        return bool(self.description["settings"].get("distance_maps"))


def class_weights(description: dict, target: str, power: float = preprocess.CLASS_WEIGHT_POWER) -> tuple[float, ...]:
    """`Records.class_weights` of a `dataset.json`'s content."""
    if len(targets.get(target).class_names) > 2:
        return preprocess.softened_weights(description["class_fractions"], power)
    foreground = description["foreground_fraction"] or 0.5
    return preprocess.softened_weights([1.0 - foreground, foreground], power)


def read_description(directory: str) -> dict:
    """A converted dataset's `dataset.json`, its schema version checked; it runs no TensorFlow op (a
    multi-worker job's collectives can still be configured after it)."""
    path = os.path.join(directory, "dataset.json")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{directory}: no dataset.json; convert a dataset first (cellseg-convert)")
    with tf.io.gfile.GFile(path) as handle:
        description = json.load(handle)
    schema.check_version(description.get("schema_version", -1), path)
    return description


def open_records(directory: str, scale: float = 1.0) -> Records:
    """Read `dataset.json` and list the shards, to be read at `scale`; ValueError with a clear message when
    unusable."""
    description = read_description(directory)
    suffix = "tfrecord.gz" if description["shards"]["compression"] == "gzip" else "tfrecord"
    shards = {
        split: tuple(sorted(tf.io.gfile.glob(os.path.join(directory, f"{split}-*.{suffix}"))))
        for split in ("train", "val")
    }
    if not shards["train"]:
        raise ValueError(f"{directory}: no train-*.{suffix} shards")
    for shard in shards["train"][:1] + shards["val"][:1]:
        _check_first_record(shard, "GZIP" if suffix.endswith(".gz") else "")
    return Records(directory, description, shards["train"], shards["val"], scale)


def _check_first_record(shard: str, compression: str) -> None:
    """SchemaError (a ValueError) when a shard's first record is of another schema version than dataset.json's."""
    try:
        first = [raw.numpy() for raw in tf.data.TFRecordDataset(shard, compression_type=compression).take(1)]
    except tf.errors.OpError as error:
        raise ValueError(f"{shard}: not a readable TFRecord shard ({error.message.splitlines()[0]})") from None
    if first:
        feature = tf.train.Example.FromString(first[0]).features.feature.get("schema_version")
        schema.check_version(feature.int64_list.value[0] if feature and feature.int64_list.value else -1, shard)


def training_dataset(
    records: Records,
    patch_size: int,
    batch_size: int,
    seed: int | None = None,
    shuffle_buffer: int = 256,
    num_workers: int = 1,
    distances: bool = False,
    worker_index: int = 0,
    foreground_share: float = 0.0,
) -> tf.data.Dataset:
    """Endless shuffled batches of random patches from the training shards.

    Each frame gives about one patch per patch-sized area of the frame (at least
    one), at random positions; frames smaller than a patch are reflect-padded.
    About `foreground_share` of them (rounded per frame) are centred on a random
    cell pixel instead, give or take a quarter patch (none in a frame without
    cells): on sparse frames most random patches hold no cell at all.
    A `seed` makes the stream deterministic (and slower); None favours throughput.
    `distances` adds the distance maps to `maps`. With several workers, worker
    `worker_index` reads its own share of the shards when there is one per
    worker or more (tf.data's automatic file sharding cannot see through the
    random seeds zipped in), else every worker reads all and keeps its share.
    """
    deterministic = seed is not None
    files = tf.data.Dataset.from_tensor_slices(list(records.train))
    own_files = 1 < num_workers <= len(records.train)
    if own_files:
        files = files.shard(num_workers, worker_index)
    count = -(-len(records.train) // num_workers) if own_files else len(records.train)
    files = files.shuffle(count, seed=seed, reshuffle_each_iteration=True).repeat()
    frames = _read(files, records, count, deterministic)
    seeds = tf.data.Dataset.random(seed=seed).map(lambda x: tf.cast(x % 2**31, tf.int32)).batch(2)
    patches = (
        tf.data.Dataset.zip(frames, seeds)
        .flat_map(lambda frame, pair: _random_patches(frame, pair, patch_size, distances, foreground_share))
        .shuffle(shuffle_buffer, seed=seed)
    )
    batches = patches.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    options = _options(len(records.train), num_workers, deterministic)
    if own_files:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return batches.with_options(options)


MAX_VALIDATION_TILES = 256  # validation tiles scored each epoch (the first of the fixed order)


def validation_dataset(records: Records, patch_size: int, batch_size: int, distances: bool = False,
                       pipelines: int = 1, pipeline: int = 0, replicas: int = 1,
                       tile_count: int | None = None) -> tf.data.Dataset:
    """The validation frames cut into patch-sized tiles that cover them, in a fixed order, in full batches.

    The same tiles every epoch, so validation metrics are comparable between
    epochs: the first `tile_count` (`validation_tile_count`: all of them, up to
    MAX_VALIDATION_TILES). With several input `pipelines` (hosts), pipeline `pipeline` keeps
    every `pipelines`-th tile. Each pipeline's tiles are padded with tiles of
    `target_ops.PADDING_LABEL` (zero weight: the loss and the metrics skip them) up to
    `validation_steps` x `replicas` batches of `batch_size`, the same count on
    every pipeline: no replica is ever handed an empty or short batch, every host
    runs as many steps, and the metrics stay those of the real tiles. The
    dataset repeats, one pass per `validation_steps` steps.
    """
    if tile_count is None:
        tile_count = validation_tile_count(records, patch_size)
    steps = validation_steps(tile_count, batch_size, pipelines, replicas)
    tiles = validation_tiles(records, patch_size, distances).take(tile_count)
    if pipelines > 1:
        tiles = tiles.shard(pipelines, pipeline)
    image, labels, maps = tiles.element_spec
    padding = tf.data.Dataset.from_tensors((
        tf.zeros(image.shape, image.dtype),
        tf.fill(labels.shape, tf.constant(target_ops.PADDING_LABEL, labels.dtype)),
        tf.zeros(maps.shape, maps.dtype),
    )).repeat()
    padded = tiles.concatenate(padding).take(steps * replicas * batch_size)
    batches = padded.batch(batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)
    options = _options(len(records.val), 1, deterministic=True)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # sharded here
    return batches.with_options(options)


def validation_steps(tile_count: int, batch_size: int, pipelines: int = 1, replicas: int = 1) -> int:
    """Steps of one validation pass: enough for the pipeline with the most tiles, `replicas` batches a step."""
    return max(1, math.ceil(math.ceil(tile_count / pipelines) / (batch_size * replicas)))


def validation_tiles(records: Records, patch_size: int, distances: bool = False) -> tf.data.Dataset:
    """The validation tiles (image, labels, maps), one by one, in a fixed order; ValueError when there are none."""
    if not records.val:
        raise ValueError(f"{records.directory}: no val-* shards; convert with --val_fraction or --val_sequences")
    files = tf.data.Dataset.from_tensor_slices(list(records.val))
    frames = _read(files, records, len(records.val), deterministic=True)
    return frames.flat_map(lambda frame: _tiles(frame, patch_size, distances))


def validation_frames(records: Records):
    """(image [H, W], labels [H, W]) numpy pairs of every whole validation frame, in a fixed order."""
    files = tf.data.Dataset.from_tensor_slices(list(records.val))
    for frame in _read(files, records, len(records.val), deterministic=True):
        yield frame["image"].numpy()[..., 0], frame["labels"].numpy()[..., 0]


def validation_sample(records: Records, limit: int, max_pixels: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """At most `limit` whole validation frames (image, labels), every n-th of them: memory stays bounded on
    long sequences. `max_pixels` lowers the limit for large frames (one frame at least)."""
    if max_pixels:
        largest = max((h * w for h, w in records.frame_sizes), default=1)
        limit = max(1, min(limit, max_pixels // largest))
    stride = max(1, -(-records.description["counts"]["val"] // limit))
    return [frame for index, frame in enumerate(validation_frames(records)) if not index % stride]


def validation_tile_count(records: Records, patch_size: int) -> int:
    """Tiles in the validation split (from dataset.json when every frame has one size, else counted), at most
    MAX_VALIDATION_TILES: large frames make hundreds of tiles, whose pass each epoch would outlast the training
    steps.

    ValueError when there are none (an empty validation split).
    """
    sizes = records.frame_sizes
    if len(sizes) == 1:
        height, width = sizes[0]
        per_frame = max(1, math.ceil(height / patch_size)) * max(1, math.ceil(width / patch_size))
        count = per_frame * records.description["counts"]["val"]
    else:
        count = int(validation_tiles(records, patch_size).take(MAX_VALIDATION_TILES).reduce(0, lambda n, _: n + 1))
    if not count:
        raise ValueError(f"{records.directory}: the validation split holds no frames; convert again with "
                         "--val_fraction or --val_sequences naming a sequence with annotated frames")
    return min(count, MAX_VALIDATION_TILES)


def _read(files: tf.data.Dataset, records: Records, count: int, deterministic: bool) -> tf.data.Dataset:
    examples = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=records.compression),
        cycle_length=max(1, min(count, 8)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    frames = examples.map(schema.decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if records.scale != 1:
        frames = frames.map(lambda record: resampling.frame(record, records.scale),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return frames


def _inputs(frame, distances: bool):
    """(image, labels, maps) of a whole frame, [H, W, C]."""
    # Stored weights are 1 + border term on background and exactly 1 on cells.
    maps = [frame["weights"] - 1.0]
    if distances:
        maps += [frame["cell_distance"], frame["neighbour_distance"]]
    return frame["image"], frame["labels"], tf.concat(maps, axis=-1)


def _pad_to(tensors, size: int):
    """Reflect-pad [H, W, C] tensors on the bottom and right up to `size` where smaller."""
    height, width = tf.shape(tensors[0])[0], tf.shape(tensors[0])[1]
    pad = [[0, tf.maximum(size - height, 0)], [0, tf.maximum(size - width, 0)], [0, 0]]
    return [_reflect_pad(t, pad) for t in tensors]


def _reflect_pad(tensor, pad):
    # Mirror padding grows a frame by at most its own size per step; frames far
    # smaller than a patch take several steps.
    target = [tf.shape(tensor)[0] + pad[0][1], tf.shape(tensor)[1] + pad[1][1]]

    def body(t):
        height, width = tf.shape(t)[0], tf.shape(t)[1]
        step = [[0, tf.minimum(target[0] - height, height)], [0, tf.minimum(target[1] - width, width)], [0, 0]]
        return (tf.pad(t, step, mode="SYMMETRIC"),)

    return tf.while_loop(
        lambda t: tf.logical_or(tf.shape(t)[0] < target[0], tf.shape(t)[1] < target[1]),
        body,
        (tensor,),
        shape_invariants=(tf.TensorShape([None, None, tensor.shape[-1]]),),
    )[0]


def _random_patches(frame, pair, patch_size: int, distances: bool, foreground_share: float = 0.0):
    """About one random patch per patch-sized area of the frame, as a dataset of (image, labels, maps); about
    `foreground_share` of them centred near a random cell pixel."""
    tensors = _pad_to(list(_inputs(frame, distances)), patch_size)
    height, width = tf.shape(tensors[0])[0], tf.shape(tensors[0])[1]
    count = tf.maximum(1, tf.cast(tf.round(height * width / patch_size**2), tf.int32))
    offsets = tf.random.stateless_uniform([count, 3], pair, 0, 2**30, dtype=tf.int32)
    corners = tf.stack([offsets[:, 0] % (height - patch_size + 1), offsets[:, 1] % (width - patch_size + 1)], 1)
    if foreground_share > 0:
        cells = tf.cast(tf.where(tensors[1][..., 0] > 0), tf.int32)  # [n, 2] cell pixels
        found = tf.shape(cells)[0]
        cells = tf.concat([cells, tf.zeros([1, 2], tf.int32)], 0)  # never gathered from empty (unused then)
        share = tf.cast(tf.round(foreground_share * tf.cast(count, tf.float32)), tf.int32)
        chosen = tf.range(count) < tf.where(found > 0, share, 0)
        picked = tf.gather(cells, offsets[:, 2] % tf.maximum(found, 1))
        jitter = tf.stack([offsets[:, 0], offsets[:, 1]], 1) % (patch_size // 2 + 1) - patch_size // 4
        centred = tf.clip_by_value(picked + jitter - patch_size // 2, 0,
                                   tf.stack([height - patch_size, width - patch_size]))
        corners = tf.where(chosen[:, None], centred, corners)
    return _patches_at(tensors, corners, patch_size)


def _patches_at(tensors, corners, patch_size: int) -> tf.data.Dataset:
    """Patch-sized windows of each [H, W, C] tensor at the top-left `corners` [n, 2]."""
    # One slice per window: cheaper than gathering a stack of windows (measured 1.7x).
    def window(corner):
        begin = tf.concat([corner, [0]], axis=0)
        return tuple(tf.slice(t, begin, [patch_size, patch_size, t.shape[-1]]) for t in tensors)

    return tf.data.Dataset.from_tensor_slices(corners).map(window)


def tile_starts(size, patch_size: int):
    """Start offsets of the fewest patch-sized tiles covering `size` pixels, evenly spread, last at the end."""
    count = tf.maximum(1, tf.cast(tf.math.ceil(size / patch_size), tf.int32))
    span = tf.maximum(size - patch_size, 0)
    steps = tf.cast(tf.range(count), tf.float64) * tf.cast(span, tf.float64) / tf.cast(tf.maximum(count - 1, 1), tf.float64)
    return tf.cast(tf.round(steps), tf.int32)


def _tiles(frame, patch_size: int, distances: bool):
    """The fewest patch-sized tiles covering the frame, as a dataset of (image, labels, maps)."""
    tensors = _pad_to(list(_inputs(frame, distances)), patch_size)
    rows = tile_starts(tf.shape(tensors[0])[0], patch_size)
    cols = tile_starts(tf.shape(tensors[0])[1], patch_size)
    corners = tf.reshape(tf.stack(tf.meshgrid(rows, cols, indexing="ij"), axis=-1), [-1, 2])
    return _patches_at(tensors, corners, patch_size)


def _options(shards: int, num_workers: int, deterministic: bool) -> tf.data.Options:
    """Shard by file when every worker gets files, else by element (few shards, many hosts)."""
    options = tf.data.Options()
    options.deterministic = deterministic
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.FILE if shards >= num_workers else policy.DATA
    return options


def auto_shard_policy(shards: int, num_workers: int):
    """The policy `_options` picks: FILE with a shard per worker or more, DATA otherwise."""
    return _options(shards, num_workers, True).experimental_distribute.auto_shard_policy


def patches_per_epoch(records: Records, patch_size: int) -> int:
    """About how many patches one pass over the training frames yields (one per patch-sized area)."""
    total = 0
    for height, width in records.frame_sizes:
        total += max(1, round(max(height, patch_size) * max(width, patch_size) / patch_size**2))
    per_frame = total / max(len(records.frame_sizes), 1)
    return int(math.ceil(per_frame * records.description["counts"]["train"]))
