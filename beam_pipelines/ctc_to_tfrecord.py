"""The Beam job behind cellseg-convert: CTC dataset folders to preprocessed, sharded TFRecords.

The job lists each dataset through Beam's filesystems (local disk, gs://, s3://,
...), reads every frame and its mask as bytes, decodes them with rasterio,
preprocesses them once (percentile stretch, border weight map, with --distance_maps the distance maps), encodes them with
`cellseg.schema` and writes `train-*` and `val-*` shards, `errors-*.jsonl` (one
line per input that could not be used, with the reason) and `dataset.json`.
Every discovered input ends up written, listed as an error, or counted as skipped
(it has only another truth kind than --truth asks for); the counts add up.

`run` takes plain settings; the command (`cellseg/cli/convert.py`) passes
every argument it does not know to Beam's PipelineOptions (--runner,
--direct_num_workers, --project, ...).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow only encodes here: no device chatter

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

import cellseg
from beam_pipelines import jobs
from cellseg import ctc, errors, preprocess, schema, targets, tiff

TRAIN, VAL = "train", "val"
ERRORS, STATS = "errors", "stats"
WRITTEN, ERROR, SKIPPED = "written", "error", "skipped"
OUTPUT_GLOBS = ("train-*", "val-*", "errors-*", "dataset.json")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the job does to each frame, and how it splits them."""

    truth: str = "gold_then_silver"
    percentiles: tuple[float, float] = preprocess.DEFAULT_PERCENTILES
    weight_map: bool = True
    w0: float = preprocess.DEFAULT_W0
    sigma: float = preprocess.DEFAULT_SIGMA
    distance_maps: bool = False  # 1 MB more per 512 x 512 frame; only --target=distance reads them
    val_fraction: float = 0.2
    val_sequences: tuple[str, ...] = ()

    def __post_init__(self):
        if self.truth not in ctc.TRUTH_POLICIES:
            raise ValueError(f"truth must be one of {ctc.TRUTH_POLICIES}, got {self.truth!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclasses.dataclass(frozen=True)
class Output:
    """Where and how shards are written."""

    directory: str
    num_shards: int = 0  # 0: one shard per bundle, no shuffle of the examples
    # Uncompressed by default: gzip stores 3.4x less but halves conversion speed and
    # makes the input pipeline 1.8x slower on the host CPU that feeds the accelerators.
    compression: str = "none"

    def __post_init__(self):
        if self.compression not in ("none", "gzip"):
            raise ValueError(f"compression must be none or gzip, got {self.compression!r}")
        if self.num_shards < 0:
            raise ValueError(f"num_shards must be 0 (runner decides) or more, got {self.num_shards}")

    @property
    def suffix(self) -> str:
        return ".tfrecord.gz" if self.compression == "gzip" else ".tfrecord"

    @property
    def compression_type(self):
        return CompressionTypes.GZIP if self.compression == "gzip" else CompressionTypes.UNCOMPRESSED


@dataclasses.dataclass(frozen=True)
class Item:
    """One discovered input: a frame, or a mask that has no frame (`orphan`)."""

    key: str
    frame: ctc.Frame | None = None
    orphan: ctc.Orphan | None = None


# --- listing (on the machine that launches the job) ----------------------------


def list_dataset(root: str, sequences=None) -> list[Item]:
    """The frames and orphan masks of one CTC dataset folder on any Beam filesystem."""
    root = root.rstrip("/")
    if "://" not in root:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            raise ctc.LayoutError(f"not a CTC dataset folder: {root}: no such directory; {ctc.EXPECTED_LAYOUT}")
    patterns = [f"{root}/*/*", f"{root}/*/*/*"]
    try:
        matched = FileSystems.match(patterns)
    except Exception as error:  # Beam raises BeamIOError, or IOError for a missing local root
        raise ctc.LayoutError(f"cannot list {root}: {errors.first_line(error)}") from error
    relative = [m.path[len(root) + 1 :] for result in matched for m in result.metadata_list]
    frames, orphans = ctc.parse_layout(root, relative, sequences)
    items = [Item(frame.key, frame=frame) for frame in frames]
    items += [Item(f"{frames[0].dataset}/orphan/{o.path}", orphan=o) for o in orphans]
    return items


# --- one frame (on the workers) ------------------------------------------------------


def split_of(frame: ctc.Frame, settings: Settings) -> str:
    """train or val, the same on every run: by sequence name, else by a hash of the frame's key."""
    if settings.val_sequences:
        named = {frame.sequence, f"{frame.dataset}/{frame.sequence}"}
        return VAL if named & set(settings.val_sequences) else TRAIN
    digest = hashlib.sha256(frame.key.encode()).digest()
    return VAL if int.from_bytes(digest[:8], "big") / 2.0**64 < settings.val_fraction else TRAIN


class BadInput(ValueError):
    """An input file that cannot be used; `path` names it, the message says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path = path


def _read_tiff(path: str, read) -> np.ndarray:
    try:
        return tiff.read(read(path), name=path)
    except ValueError as error:
        raise BadInput(path, str(error)) from error


@dataclasses.dataclass(frozen=True)
class Converted:
    split: str
    example: bytes
    stats: dict


def convert_frame(frame: ctc.Frame, mask_path: str, truth: str, settings: Settings, read=jobs.read_bytes) -> Converted:
    """Read, check, preprocess and encode one frame; BadInput names the file at fault and why."""
    raw = _read_tiff(frame.image, read)
    labels = _read_tiff(mask_path, read)
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise BadInput(frame.image, f"{frame.image}: frame holds NaN or infinite values")
    if labels.dtype.kind not in "ui":
        raise BadInput(mask_path, f"{mask_path}: mask is {labels.dtype.name}, expected integer instance labels")
    if labels.shape != raw.shape:
        raise BadInput(
            mask_path,
            f"{mask_path}: mask is {labels.shape[0]} x {labels.shape[1]} but its frame "
            f"{frame.image} is {raw.shape[0]} x {raw.shape[1]}",
        )
    if not preprocess.labels_fit(labels):
        raise BadInput(mask_path, f"{mask_path}: labels outside 0..65535")
    image, intensities = preprocess.percentile_stretch(raw, *settings.percentiles)
    weights = preprocess.border_weight_map(labels, settings.w0, settings.sigma) if settings.weight_map else None
    distances = targets.distance_maps(labels) if settings.distance_maps else None
    split = split_of(frame, settings)
    example = schema.encode(
        image=image,
        labels=labels,
        weights=weights,
        distances=distances,
        dataset=frame.dataset,
        sequence=frame.sequence,
        frame=frame.index,
        truth=truth,
        source_dtype=raw.dtype.name,
        percentiles=settings.percentiles,
        intensities=intensities,
    )
    stats = {
        "outcome": WRITTEN,
        "split": split,
        "truth": truth,
        "dataset": frame.dataset,
        "size": [int(raw.shape[0]), int(raw.shape[1])],
        "foreground": preprocess.foreground_fraction(labels),
        "boundary": float(np.mean(targets.three_class_numpy(labels) == targets.BOUNDARY)),
        "cells": int(len(np.unique(labels[labels > 0]))),
        "constant": bool(raw.min() == raw.max()),  # blank or saturated: nothing to learn from the image
    }
    return Converted(split, example, stats)


class ConvertItem(beam.DoFn):
    """Routes each discovered input to train, val, errors or skipped, one outcome each."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.counters = {name: Metrics.counter("cellseg", name) for name in (TRAIN, VAL, ERROR, SKIPPED)}

    def process(self, item: Item):
        if item.orphan is not None:
            yield from self._error(item, item.orphan.path, item.orphan.reason)
            return
        frame = item.frame
        mask_path, truth = frame.truth(self.settings.truth)
        if mask_path is None:
            if frame.gold or frame.silver:  # annotated, but not with the kind asked for
                self.counters[SKIPPED].inc()
                yield beam.pvalue.TaggedOutput(STATS, {"outcome": SKIPPED, "reason": f"no {self.settings.truth} truth"})
            else:
                expected = f"{frame.sequence}_GT/SEG or {frame.sequence}_ST/SEG"
                yield from self._error(item, frame.image, f"missing mask: no man_seg{frame.index:03d}.tif in {expected}")
            return
        try:
            converted = convert_frame(frame, mask_path, truth, self.settings)
        except BadInput as error:
            yield from self._error(item, error.path, str(error))
            return
        self.counters[converted.split].inc()
        yield beam.pvalue.TaggedOutput(converted.split, converted.example)
        yield beam.pvalue.TaggedOutput(STATS, converted.stats)

    def _error(self, item: Item, path: str, reason: str):
        self.counters[ERROR].inc()
        yield beam.pvalue.TaggedOutput(ERRORS, {"key": item.key, "path": path, "reason": reason})
        yield beam.pvalue.TaggedOutput(STATS, {"outcome": ERROR})


class SummarizeOutcomes(beam.CombineFn):
    """Counts, sizes, truth kinds and foreground fraction of everything the job saw."""

    def create_accumulator(self):
        return {"outcomes": {}, "splits": {}, "truth": {}, "datasets": {}, "sizes": [], "skipped": {},
                "foreground_sum": 0.0, "foreground_train_sum": 0.0, "boundary_train_sum": 0.0, "cells": 0,
                "constant": 0}

    def add_input(self, acc, stats):
        _bump(acc["outcomes"], stats["outcome"])
        if stats["outcome"] == SKIPPED:
            _bump(acc["skipped"], stats["reason"])
        if stats["outcome"] != WRITTEN:
            return acc
        _bump(acc["splits"], stats["split"])
        _bump(acc["truth"], stats["truth"])
        _bump(acc["datasets"], stats["dataset"])
        if stats["size"] not in acc["sizes"]:
            acc["sizes"].append(stats["size"])
        acc["foreground_sum"] += stats["foreground"]
        acc["cells"] += stats["cells"]
        acc["constant"] += stats["constant"]
        if stats["split"] == TRAIN:
            acc["foreground_train_sum"] += stats["foreground"]
            acc["boundary_train_sum"] += stats["boundary"]
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            for name in ("outcomes", "splits", "truth", "datasets", "skipped"):
                for key, count in acc[name].items():
                    _bump(merged[name], key, count)
            merged["sizes"] += [size for size in acc["sizes"] if size not in merged["sizes"]]
            for name in ("foreground_sum", "foreground_train_sum", "boundary_train_sum", "cells", "constant"):
                merged[name] += acc[name]
        return merged

    def extract_output(self, acc):
        return acc


def _bump(counts: dict, key, by: int = 1) -> None:
    counts[key] = counts.get(key, 0) + by


def describe(acc: dict, context: dict) -> dict:
    """The content of dataset.json from the combined outcomes and the job's own settings."""
    outcomes, splits = acc["outcomes"], acc["splits"]
    written = outcomes.get(WRITTEN, 0)
    train = splits.get(TRAIN, 0)
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "cellseg_version": cellseg.__version__,
        "counts": {
            "discovered": sum(outcomes.values()),
            "written": written,
            "train": train,
            "val": splits.get(VAL, 0),
            "errors": outcomes.get(ERROR, 0),
            "skipped": outcomes.get(SKIPPED, 0),
        },
        "skipped_reasons": acc["skipped"],
        # Written, but suspicious: frames of one intensity everywhere (blank or saturated).
        "warnings": {"constant_frames": acc["constant"]},
        "datasets": acc["datasets"],
        "truth": acc["truth"],
        "frame_sizes": sorted(acc["sizes"]),
        "foreground_fraction": acc["foreground_train_sum"] / train if train else None,
        "foreground_fraction_all": acc["foreground_sum"] / written if written else None,
        # Training split, three-class target: background, interior, boundary.
        "class_fractions": _class_fractions(acc["foreground_train_sum"] / train, acc["boundary_train_sum"] / train)
        if train else None,
        "cells_per_frame": acc["cells"] / written if written else None,
        **context,
    }


def _class_fractions(foreground: float, boundary: float) -> list[float]:
    return [1.0 - foreground, foreground - boundary, boundary]


# --- the pipeline ----------------------------------------------------------------------


def build(pipeline: beam.Pipeline, items: list[Item], settings: Settings, output: Output, context: dict) -> None:
    """Add the conversion of `items` to `pipeline`."""
    results = (
        pipeline
        | "Inputs" >> beam.Create(items)
        | "Convert" >> beam.ParDo(ConvertItem(settings)).with_outputs(TRAIN, VAL, ERRORS, STATS)
    )
    for split in (TRAIN, VAL):
        _ = results[split] | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
            _join(output.directory, split),
            file_name_suffix=output.suffix,
            num_shards=output.num_shards,
            compression_type=output.compression_type,
        )
    _ = (
        results[ERRORS]
        | "ErrorLines" >> beam.Map(json.dumps)
        | "WriteErrors" >> beam.io.WriteToText(_join(output.directory, "errors"), file_name_suffix=".jsonl")
    )
    _ = (
        results[STATS]
        | "Summarize" >> beam.CombineGlobally(SummarizeOutcomes())
        | "Describe" >> beam.Map(describe, context)
        | "WriteDatasetJson" >> beam.Map(jobs.write_json, _join(output.directory, "dataset.json"))
    )


def run(
    inputs: list[str],
    output: Output,
    settings: Settings,
    beam_args: list[str] | None = None,
    sequences=None,
    overwrite: bool = False,
    command: str = "",
) -> dict:
    """Convert `inputs` (CTC dataset folders) into shards under `output`; returns dataset.json's content.

    Raises ctc.LayoutError for an input that is not a CTC folder, and
    FileExistsError when `output` holds shards and `overwrite` is false.
    """
    items = []
    for root in inputs:
        items += list_dataset(root, sequences)
    check_val_sequences(items, settings.val_sequences)
    _clear_output(output.directory, overwrite)
    context = {
        "inputs": list(inputs),
        "sequences": list(sequences) if sequences else None,
        "settings": {**dataclasses.asdict(settings), "percentiles": list(settings.percentiles),
                     "val_sequences": list(settings.val_sequences)},
        "shards": {"train": f"train-*{output.suffix}", "val": f"val-*{output.suffix}",
                   "compression": output.compression, "num_shards": output.num_shards},
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"converting {len(items)} inputs from {', '.join(inputs)} into {output.directory}", file=sys.stderr)
    options = PipelineOptions(beam_args or [])
    runner = jobs.local_runner(options)
    if runner is not None:
        options = PipelineOptions(jobs.with_local_defaults(beam_args or []))
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        build(pipeline, items, settings, output, context)
    with FileSystems.open(_join(output.directory, "dataset.json"), compression_type=CompressionTypes.UNCOMPRESSED) as f:
        description = json.loads(f.read())
    counts = description["counts"]
    if counts["discovered"] != len(items) or counts["written"] + counts["errors"] + counts["skipped"] != len(items):
        raise RuntimeError(f"outcome counts do not add up to the {len(items)} inputs: {counts}")
    return description


def check_val_sequences(items: list[Item], val_sequences) -> None:
    """ValueError naming the sequences found when a --val_sequences name matches none of them."""
    frames = [item.frame for item in items if item.frame is not None]
    found = {frame.sequence for frame in frames} | {f"{frame.dataset}/{frame.sequence}" for frame in frames}
    missing = [name for name in val_sequences if name not in found]
    if missing:
        names = sorted({f"{frame.dataset}/{frame.sequence}" for frame in frames})
        raise ValueError(f"--val_sequences: no sequence {', '.join(missing)}; found {', '.join(names) or 'none'}")


def _clear_output(directory: str, overwrite: bool) -> None:
    patterns = [_join(directory, name) for name in OUTPUT_GLOBS]
    existing = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list]
    if existing and not overwrite:
        raise FileExistsError(f"{directory} already holds converted data ({len(existing)} files); pass --overwrite")
    if existing:
        FileSystems.delete(existing)
    if "://" not in directory:
        os.makedirs(directory, exist_ok=True)


def _join(directory: str, name: str) -> str:
    return FileSystems.join(directory, name)


def format_counts(description: dict) -> str:
    c = description["counts"]
    lines = [
        f"discovered {c['discovered']} = written {c['written']} (train {c['train']}, val {c['val']})"
        f" + errors {c['errors']} + skipped {c['skipped']}",
    ]
    for reason, count in description.get("skipped_reasons", {}).items():
        lines.append(f"  skipped {count}: {reason}")
    constant = description.get("warnings", {}).get("constant_frames", 0)
    if constant:
        lines.append(f"warning: {constant} frame(s) of a single intensity (blank or saturated), written anyway")
    if description.get("foreground_fraction") is not None:
        lines.append(f"foreground fraction (train): {description['foreground_fraction']:.1%}")
    lines.append(f"frame sizes: {', '.join(f'{h} x {w}' for h, w in description['frame_sizes']) or '-'}")
    return "\n".join(lines)
