"""A converted dataset as training sees it, read without TensorFlow: `dataset.json`, the shards, the frames.

`open_records` lists a records folder (local, or remote through `cellseg.files`)
and checks its schema version; `frames` decodes a split's frames in numpy
(`cellseg.record_reader`), at the run's input scale (`cellseg.resampling`).
Both input pipelines build on it: tf.data's (`cellseg.data`, TensorFlow) and
numpy batches (`cellseg.batches`, JAX); the whole validation frames that
`val_seg` and tuning segment come from here on either backend.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator

import numpy as np

from cellseg import files, preprocess, record_fields, record_reader, resampling, targets

MAX_VALIDATION_TILES = 256  # validation tiles scored each epoch (the first of the fixed order)


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
    if not files.exists(path):
        raise ValueError(f"{directory}: no dataset.json; convert a dataset first (cellseg-convert)")
    with files.open_file(path) as handle:
        description = json.load(handle)
    record_fields.check_version(description.get("schema_version", -1), path)
    return description


def open_records(directory: str, scale: float = 1.0) -> Records:
    """Read `dataset.json` and list the shards, to be read at `scale`; ValueError with a clear message when
    unusable."""
    description = read_description(directory)
    suffix = "tfrecord.gz" if description["shards"]["compression"] == "gzip" else "tfrecord"
    shards = {split: tuple(files.glob(os.path.join(directory, f"{split}-*.{suffix}"))) for split in ("train", "val")}
    if not shards["train"]:
        raise ValueError(f"{directory}: no train-*.{suffix} shards")
    for shard in shards["train"][:1] + shards["val"][:1]:
        _check_first_record(shard)
    return Records(directory, description, shards["train"], shards["val"], scale)


def _check_first_record(shard: str) -> None:
    """SchemaError (a ValueError) when a shard's first record is of another schema version than dataset.json's;
    ValueError when it is not a readable shard."""
    try:
        first = next(record_reader.records(shard, opener=files.open_file), None)
    except (OSError, EOFError, record_reader.RecordError) as error:
        raise ValueError(f"{shard}: not a readable TFRecord shard ({error})") from None
    if first is not None:
        version = record_reader.parse_example(first).get("schema_version", [-1])[0]
        record_fields.check_version(version, shard)


INTERLEAVE = 8  # shards read in turn, a record from each (tf.data's interleave in `cellseg.data`)


def frames(records: Records, split: str) -> Iterator[dict]:
    """The frames of `split` ("train" or "val") decoded in numpy (`record_reader.decode`), at the records' scale,
    in tf.data's deterministic order: up to INTERLEAVE shards read in turn, a record from each, a finished shard's
    place taken by the next shard when its turn comes round."""
    shards = iter(getattr(records, split))
    cycle: list[Iterator[dict] | None] = [None] * max(1, min(len(getattr(records, split)), INTERLEAVE))
    opened = index = 0
    more = True
    while more or opened:
        if cycle[index] is None and more:
            shard = next(shards, None)
            if shard is None:
                more = False
            else:
                cycle[index] = record_reader.read(shard, opener=files.open_file)
                opened += 1
            continue
        if cycle[index] is not None:
            record = next(cycle[index], None)
            if record is not None:
                yield resampling.frame(record, records.scale)
            else:
                cycle[index] = None
                opened -= 1
        index = (index + 1) % len(cycle)


def inputs(frame: dict, distances: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, labels, maps) of a whole numpy frame, [H, W, C]: `maps` holds the border term (the stored
    weights less 1: exactly 0 on cells), then with `distances` the cell and neighbour distance maps."""
    maps = [frame["weights"] - 1.0]
    if distances:
        maps += [frame["cell_distance"], frame["neighbour_distance"]]
    return frame["image"], frame["labels"], np.concatenate(maps, axis=-1)


def validation_frames(records: Records) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(image [H, W], labels [H, W]) numpy pairs of every whole validation frame, in a fixed order."""
    for frame in frames(records, "val"):
        yield frame["image"][..., 0], frame["labels"][..., 0]


def validation_sample(records: Records, limit: int, max_pixels: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """At most `limit` whole validation frames (image, labels), every n-th of them: memory stays bounded on
    long sequences. `max_pixels` lowers the limit for large frames (one frame at least)."""
    if max_pixels:
        largest = max((h * w for h, w in records.frame_sizes), default=1)
        limit = max(1, min(limit, max_pixels // largest))
    stride = max(1, -(-records.description["counts"]["val"] // limit))
    return [frame for index, frame in enumerate(validation_frames(records)) if not index % stride]


def tile_starts(size: int, patch_size: int) -> np.ndarray:
    """Start offsets of the fewest patch-sized tiles covering `size` pixels, evenly spread, last at the end."""
    count = max(1, math.ceil(size / patch_size))
    span = max(size - patch_size, 0)
    return np.round(np.arange(count, dtype=np.float64) * span / max(count - 1, 1)).astype(np.int32)


def tiles_of(height: int, width: int, patch_size: int) -> int:
    """How many tiles cover a frame of `height` x `width` (`tile_starts` along each side)."""
    return max(1, math.ceil(height / patch_size)) * max(1, math.ceil(width / patch_size))


def validation_steps(tile_count: int, batch_size: int, pipelines: int = 1, replicas: int = 1) -> int:
    """Steps of one validation pass: enough for the pipeline with the most tiles, `replicas` batches a step."""
    return max(1, math.ceil(math.ceil(tile_count / pipelines) / (batch_size * replicas)))


def validation_tile_count(records: Records, patch_size: int) -> int:
    """Tiles in the validation split (from dataset.json when every frame has one size, else counted), at most
    MAX_VALIDATION_TILES: large frames make hundreds of tiles, whose pass each epoch would outlast the training
    steps.

    ValueError when there are none (an empty validation split).
    """
    if not records.val:
        raise ValueError(f"{records.directory}: no val-* shards; convert with --val_fraction or --val_sequences")
    sizes = records.frame_sizes
    if len(sizes) == 1:
        count = tiles_of(*sizes[0], patch_size) * records.description["counts"]["val"]
    else:
        count = 0
        for frame in frames(records, "val"):
            count += tiles_of(*frame["image"].shape[:2], patch_size)
            if count >= MAX_VALIDATION_TILES:
                break
    if not count:
        raise ValueError(f"{records.directory}: the validation split holds no frames; convert again with "
                         "--val_fraction or --val_sequences naming a sequence with annotated frames")
    return min(count, MAX_VALIDATION_TILES)


def patches_per_epoch(records: Records, patch_size: int) -> int:
    """About how many patches one pass over the training frames yields (one per patch-sized area)."""
    total = 0
    for height, width in records.frame_sizes:
        total += max(1, round(max(height, patch_size) * max(width, patch_size) / patch_size**2))
    per_frame = total / max(len(records.frame_sizes), 1)
    return int(math.ceil(per_frame * records.description["counts"]["train"]))
