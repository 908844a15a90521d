"""The Beam job behind `cellseg-predict --runner=...`: segment and track many sequences on a cluster.

The twin of the conversion job (`ctc_to_tfrecord.py`). The launcher lists the
sequences under `--input` through Beam's filesystems (local disk, gs://, s3://):
a CTC dataset root (its `NN/` folders), a sequence folder or a glob of them, or
TIFF stacks (one sequence each). On the workers:

1. each frame is read (a stack is read once and yields its planes); an unreadable
   frame goes to the errors output with its reason;
2. RunInference segments the frames with the run folder's network, through a
   small `ModelHandler` around cellseg's own loader (`predict.load_model`: Keras 3
   files, the tuned `postprocess.json`, `plan.json`'s input scale), test-time
   augmented like `cellseg-predict`; Beam batches the frames and shares one model
   between a worker's threads. The instances are made there too;
3. each sequence's frames are grouped, put in order and tracked, and its results
   written as `cellseg-predict --input=<sequence> --output_dir=<output>/<key>`
   writes them (`predict.write_frame`, `predict.write_tracks`): `NN_RES/`
   (masks, `res_track.txt`), `cells.csv`, `tracks.csv`. The key is the sequence's
   path below the inputs' common folder (`01`, `Fluo-N2DH-GOWT1/01`) or a stack's
   stem. A frame whose size differs from the rest of its sequence goes to the
   errors output (tracking compares frames pixel by pixel).

A sequence's results are written into a hidden staging folder and moved into place
when complete (`cellseg.staging`), so a retried bundle or a rerun never leaves
a mixture; on an object store they are written locally and then copied, the
same files whatever the attempt. `errors-*.jsonl` lists every frame that was not
segmented, with its reason, and `predictions.json` the counts, which add up:
frames found = segmented + errors.

A sequence is tracked on one worker: its labels and frames are held in that
worker's memory (about 4 bytes a pixel per frame, 4 GB for 1000 frames of 1024 x 1024).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import jobs
from cellseg import ctc, errors, predict, resampling, run_folder, stacks, staging, tiff, tiling, tracking

ERRORS, STATS, SUMMARY = "errors", "stats", "predictions.json"
SEQUENCE_FOLDER = re.compile(r"^\d{2,}$")
STACK_SUFFIXES = (".tif", ".tiff")
MAX_BATCH = 8  # frames per RunInference batch (frames of one size are predicted together)


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One sequence to segment: `key` (its output folder below --output_dir), `name` (NN or a stack's stem),
    and its frames (name, path) in order, or the stack file."""

    key: str
    name: str
    frames: tuple[tuple[str, str], ...] = ()
    stack: str | None = None


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame of a sequence: its name (t000, or a stack's t000 ...), where it comes from, its size."""

    key: str
    sequence: str
    name: str
    where: str


@dataclasses.dataclass(frozen=True)
class Settings:
    """What each sequence's results hold (the flags of cellseg-predict)."""

    model: str
    tta: bool = True
    track: bool = True
    overlays: bool = False
    overrides: tuple[tuple[str, object], ...] = ()  # post-processing thresholds replacing the tuned ones
    pixel_size: float | None = None
    frame_interval: float | None = None
    max_pixels: int = 0  # 0: cellseg's default pixel budget per network call
    engine: str = "keras"  # predict.ENGINES: "onnx" runs a package's ONNX weights


# --- listing (on the machine that launches the job) ---------------------------------


def list_sequences(source: str) -> list[Sequence]:
    """The sequences of `source` on any Beam filesystem; ValueError in one line when there are none."""
    pattern = source.rstrip("/")
    if "://" not in pattern:
        pattern = os.path.abspath(pattern)
    folders = _frames_by_folder(f"{pattern}/t*.tif*")  # a sequence folder, or a glob of them
    if not folders:
        folders = {folder: frames for folder, frames in _frames_by_folder(f"{pattern}/*/t*.tif*").items()
                   if SEQUENCE_FOLDER.match(_basename(folder))}  # a dataset root
    if folders:
        common = _common_folder(list(folders))
        return [Sequence(_relative(folder, common), _basename(folder), tuple(frames))
                for folder, frames in sorted(folders.items())]
    files = sorted(path for path in _match(pattern) if path.lower().endswith(STACK_SUFFIXES))
    if not files:
        raise ValueError(f"{source}: no sequence found (a CTC dataset root with NN/ folders, a sequence folder "
                         "of frames t000.tif ..., a glob of them, or TIFF stacks)")
    stems = [stacks.stem(path) for path in files]
    if len(set(stems)) < len(stems):
        twice = sorted(stem for stem, count in collections.Counter(stems).items() if count > 1)
        raise ValueError(f"{source}: stacks of the same name in different folders ({', '.join(twice)}); their "
                         "results would collide")
    return [Sequence(stem, stem, stack=path) for stem, path in zip(stems, files)]


def _match(pattern: str) -> list[str]:
    try:
        return [m.path for result in FileSystems.match([pattern]) for m in result.metadata_list]
    except Exception as error:  # BeamIOError, or OSError for a missing local folder
        if "No files found" in str(error) or isinstance(error, FileNotFoundError):
            return []
        raise ValueError(f"cannot list {pattern}: {errors.first_line(error)}") from error


def _frames_by_folder(pattern: str) -> dict[str, list[tuple[str, str]]]:
    folders: dict[str, list[tuple[str, str]]] = {}
    for path in _match(pattern):
        name = _basename(path)
        if ctc.FRAME.match(name):
            folders.setdefault(path[: -len(name) - 1], []).append((name.split(".")[0], path))
    return {folder: sorted(frames, key=lambda frame: ctc.frame_index(frame[0])[0])
            for folder, frames in folders.items()}


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _common_folder(folders: list[str]) -> str:
    """The folder above all `folders` (the parent of a lone one)."""
    parts = [folder.rstrip("/").split("/") for folder in folders]
    common = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    if len(common) == min(len(p) for p in parts):  # one folder, or one inside another: its parent
        common = common[:-1]
    return "/".join(common)


def _relative(folder: str, common: str) -> str:
    return folder[len(common):].strip("/")


# --- the workers ---------------------------------------------------------------------


def frames_of(sequence: Sequence):
    """(frame, raw) of each frame of `sequence` that can be read; errors tagged with their reason."""
    if sequence.stack is None:
        for name, path in sequence.frames:
            frame = Frame(sequence.key, sequence.name, name, path)
            try:
                raw = tiff.read(jobs.read_bytes(path), name=path)
                _check_finite(raw, path)
            except ValueError as error:
                yield beam.pvalue.TaggedOutput(ERRORS, {"sequence": sequence.key, "path": path, "reason": str(error)})
                continue
            yield frame, raw
        return
    with tempfile.TemporaryDirectory(prefix="cellseg-stack-") as scratch:
        local = sequence.stack
        if "://" in local:  # tifffile reads a local file
            local = os.path.join(scratch, _basename(sequence.stack))
            with open(local, "wb") as handle:
                handle.write(jobs.read_bytes(sequence.stack))
        try:
            with stacks.Stack(local) as stack:
                for index, name in enumerate(stack.names()):
                    where = f"{sequence.stack}, frame {index}"
                    try:
                        raw = stack.frame(index)
                        _check_finite(raw, where)
                    except ValueError as error:
                        yield beam.pvalue.TaggedOutput(ERRORS, {"sequence": sequence.key, "path": where,
                                                                "reason": str(error)})
                        continue
                    yield Frame(sequence.key, sequence.name, name, where), raw
        except ValueError as error:
            yield beam.pvalue.TaggedOutput(ERRORS, {"sequence": sequence.key, "path": sequence.stack,
                                                    "reason": str(error)})


def _check_finite(raw: np.ndarray, where: str) -> None:
    if not np.isfinite(raw).all():
        raise ValueError(f"{where}: holds NaN or infinite values; not segmented")


class ReadFrames(beam.DoFn):
    def __init__(self):
        self.unread = Metrics.counter("cellseg", "frames_unreadable")

    def process(self, sequence: Sequence):
        for out in frames_of(sequence):
            if isinstance(out, beam.pvalue.TaggedOutput):
                self.unread.inc()
                yield beam.pvalue.TaggedOutput(STATS, {"outcome": "error"})
            yield out


@dataclasses.dataclass(frozen=True)
class Loaded:
    """What a worker loads once: the model and its post-processing settings (Beam's shared handle keeps a weak
    reference to it, which a tuple cannot have)."""

    model: object  # predict.Model
    postprocess: object  # instances.Postprocess


class SegmenterHandler(ModelHandler):
    """RunInference's handler around cellseg's loader: raw frames in, instance labels out.

    `load_model` runs once per worker process (Beam shares the model between its
    threads); `run_inference` stretches and resamples each frame as `cellseg-predict`
    does, predicts frames of one size together, and makes the instances.
    """

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings

    def load_model(self):
        path = _local_model(self.settings.model)
        model = predict.load_model(path, max_pixels=self.settings.max_pixels or tiling.MAX_TILE_PIXELS,
                                   engine=self.settings.engine)
        if self.settings.tta:
            model = dataclasses.replace(model, predict=tiling.averaged_over_symmetries(model.predict))
        return Loaded(model, predict.postprocess_settings(model, dict(self.settings.overrides)))

    def run_inference(self, batch, model, inference_args=None):
        network, postprocess = model.model, model.postprocess
        images = [resampling.image(predict.stretched(raw), network.scale) for raw in batch]
        outputs = [None] * len(batch)
        by_shape = collections.defaultdict(list)
        for index, image in enumerate(images):
            by_shape[image.shape].append(index)
        for shape, members in by_shape.items():
            step = network.frames_per_call(shape)
            for start in range(0, len(members), step):
                chosen = members[start:start + step]
                for index, output in zip(chosen, predict.network_outputs(network, [images[i] for i in chosen])):
                    outputs[index] = output
        return [PredictionResult(raw, predict.labels_of(output, postprocess, raw.shape))
                for raw, output in zip(batch, outputs)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": MAX_BATCH}

    def share_model_across_processes(self) -> bool:
        return False


def _local_model(path: str) -> str:
    """A run folder, `.keras` file or package on a remote filesystem copied to local disk (what the loader reads)."""
    if "://" not in path:
        return path
    local = tempfile.mkdtemp(prefix="cellseg-model-")
    if path.endswith((".zip", ".keras")):
        names = [(path, os.path.join(local, _basename(path)))]
        target = names[0][1]
    else:
        names = [(FileSystems.join(path, part), os.path.join(local, part))
                 for part in (run_folder.BEST, run_folder.POSTPROCESS, run_folder.PLAN)]
        target = local
    for source, destination in names:
        if FileSystems.exists(source):
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with open(destination, "wb") as handle:
                handle.write(jobs.read_bytes(source))
    return target


class WriteSequence(beam.DoFn):
    """A sequence's labelled frames, in order, tracked and written whole (see the module's doc)."""

    def __init__(self, output_dir: str, settings: Settings):
        self.output_dir, self.settings = output_dir, settings
        self.counters = {name: Metrics.counter("cellseg", name)
                         for name in ("sequences_written", "frames_segmented", "frames_wrong_size")}

    def process(self, element):
        key, members = element
        members = sorted(members, key=lambda member: ctc.frame_index(member[0].name)[0] if ctc.frame_index(
            member[0].name) else 0)
        shape = collections.Counter(raw.shape for _, raw, _ in members).most_common(1)[0][0]
        kept = []
        for frame, raw, labels in members:
            if raw.shape != shape:
                self.counters["frames_wrong_size"].inc()
                yield beam.pvalue.TaggedOutput(ERRORS, {
                    "sequence": key, "path": frame.where,
                    "reason": f"{frame.where}: {raw.shape[0]} x {raw.shape[1]}, but the other frames of its "
                              f"sequence are {shape[0]} x {shape[1]}; not segmented"})
                yield beam.pvalue.TaggedOutput(STATS, {"outcome": "error"})
            else:
                kept.append((frame, raw, labels))
        sequence = kept[0][0].sequence
        destination = FileSystems.join(self.output_dir, key) if "://" in self.output_dir else os.path.join(
            self.output_dir, *key.split("/"))
        remote = "://" in destination
        with tempfile.TemporaryDirectory(prefix="cellseg-sequence-") as local:
            folder = local if remote else destination
            with staging.staged(folder, predict.result_parts(sequence), "predict") as scratch:
                recorder = tracking.Recorder() if self.settings.track else None
                rows = []
                for frame, raw, labels in kept:
                    rows += predict.write_frame(frame.name, raw, labels, sequence, scratch, recorder,
                                                self.settings.overlays)
                with open(os.path.join(scratch, predict.CELLS_TABLE), "w", newline="") as table:
                    writer = csv.DictWriter(table, fieldnames=predict.CELL_COLUMNS)
                    writer.writeheader()
                    writer.writerows(rows)
                tracked = predict.write_tracks(recorder, sequence, scratch, kept[-1][1], self.settings.overlays,
                                               self.settings.pixel_size, self.settings.frame_interval) \
                    if recorder else {"tracks": 0, "divisions": 0}
            if remote:
                _upload(local, destination)
        self.counters["sequences_written"].inc()
        self.counters["frames_segmented"].inc(len(kept))
        yield beam.pvalue.TaggedOutput(STATS, {"outcome": "segmented", "frames": len(kept), "cells": len(rows),
                                               **tracked})


def _upload(local: str, destination: str) -> None:
    for folder, _, names in os.walk(local):
        for name in names:
            path = os.path.join(folder, name)
            target = FileSystems.join(destination, *os.path.relpath(path, local).split(os.sep))
            with open(path, "rb") as source, FileSystems.create(target) as handle:
                shutil.copyfileobj(source, handle)


class Count(beam.CombineFn):
    def create_accumulator(self):
        return {"sequences": 0, "frames": 0, "errors": 0, "cells": 0, "tracks": 0, "divisions": 0}

    def add_input(self, acc, stats):
        if stats["outcome"] == "error":
            acc["errors"] += 1
        else:
            acc["sequences"] += 1
            for name in ("frames", "cells", "tracks", "divisions"):
                acc[name] += stats[name]
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            for name, value in acc.items():
                merged[name] += value
        return merged

    def extract_output(self, acc):
        return acc


# --- the pipeline -------------------------------------------------------------------


def build(pipeline: beam.Pipeline, sequences: list[Sequence], output_dir: str, settings: Settings,
          context: dict) -> None:
    """Add the segmentation and tracking of `sequences` to `pipeline`."""
    read = (pipeline
            | "Sequences" >> beam.Create(sequences)
            | "Reshuffle" >> beam.Reshuffle()  # sequences spread over the workers
            | "ReadFrames" >> beam.ParDo(ReadFrames()).with_outputs(ERRORS, STATS, main="frames"))
    segmented = (read.frames
                 | "SpreadFrames" >> beam.Reshuffle()  # frames of a sequence spread over the workers
                 | "Segment" >> RunInference(KeyedModelHandler(SegmenterHandler(settings)))
                 | "BySequence" >> beam.Map(lambda keyed: (keyed[0].key, (keyed[0], keyed[1].example,
                                                                          keyed[1].inference)))
                 | "Group" >> beam.GroupByKey()
                 | "Write" >> beam.ParDo(WriteSequence(output_dir, settings)).with_outputs(ERRORS, STATS,
                                                                                           main="done"))
    _ = ((read[ERRORS], segmented[ERRORS])
         | "AllErrors" >> beam.Flatten()
         | "ErrorLines" >> beam.Map(json.dumps)
         | "WriteErrors" >> beam.io.WriteToText(FileSystems.join(output_dir, "errors"), file_name_suffix=".jsonl"))
    _ = ((read[STATS], segmented[STATS])
         | "AllStats" >> beam.Flatten()
         | "Count" >> beam.CombineGlobally(Count())
         | "Describe" >> beam.Map(lambda counts: {**counts, **context})
         | "WriteSummary" >> beam.Map(jobs.write_json, FileSystems.join(output_dir, SUMMARY)))


def run(source: str, output_dir: str, settings: Settings, beam_args: list[str] | None = None) -> dict:
    """Segment and track every sequence of `source` into `output_dir`; returns predictions.json's content.

    ValueError in one line for a source without sequences or a model that cannot be read.
    """
    sequences = list_sequences(source)
    frames = sum(len(s.frames) for s in sequences if s.stack is None)
    stacked = sum(1 for s in sequences if s.stack is not None)
    _check_model(settings.model, settings.engine)
    for old in _match(FileSystems.join(output_dir, "errors-*")) + _match(FileSystems.join(output_dir, SUMMARY)):
        FileSystems.delete([old])
    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
    print(f"segmenting {len(sequences)} sequence(s) ({frames} frames in folders, {stacked} stack(s)) from "
          f"{source} into {output_dir}", file=sys.stderr)
    context = {"frames_found": frames if not stacked else None, "source": source, "model": settings.model}
    options = PipelineOptions(beam_args or [])
    runner = jobs.local_runner(options)
    if runner is not None:
        options = PipelineOptions(jobs.with_local_defaults(beam_args or []))
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        build(pipeline, sequences, output_dir, settings, context)
    with FileSystems.open(FileSystems.join(output_dir, SUMMARY),
                          compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        summary = json.loads(handle.read())
    if summary["frames_found"] is not None and summary["frames"] + summary["errors"] != summary["frames_found"]:
        raise RuntimeError(f"frame counts do not add up to the {frames} frames found: {summary}")
    return summary


def _check_model(path: str, engine: str = "keras") -> None:
    """ValueError in one line, before any worker starts, for a model that is not there."""
    if "://" in path:
        if not FileSystems.exists(path):
            raise ValueError(f"{path}: no such model")
        return
    predict.load_model(path, engine=engine)  # names what is wrong with a local model


def format_summary(summary: dict, output_dir: str) -> str:
    found = summary["frames_found"]
    total = f"{found} frames found = " if found is not None else ""
    return (f"{total}segmented {summary['frames']} + errors {summary['errors']}; {summary['sequences']} "
            f"sequence(s), {summary['cells']} cells, {summary['tracks']} track(s), {summary['divisions']} "
            f"division(s); results in {output_dir}/<sequence>/"
            + (f", errors in {output_dir}/errors-*.jsonl" if summary["errors"] else ""))
