"""Segmenting frames with a trained model: loading it, the frames, instances, what is written.

`run_prediction` segments a CTC sequence folder, a (T, Y, X) TIFF stack, a TIFF
or a glob and writes CTC results (`NN_RES/maskTTT.tif`; `<stem>_RES/` for a
stack), `cells.csv` and, on request, overlays.
Frames are predicted whole when they fit the memory budget, in overlapping
tiles otherwise (`cellseg.tiling`), frames of one size batched together. The
frames stream: one thread reads the next frames, the network predicts, and
another thread turns the previous outputs into instances and writes them, so
memory stays flat however long the sequence. A result is written into a fresh
hidden folder inside the output folder and moved into place only once complete
(`staged`): an interrupted or failed run leaves an earlier result as it was, never
a mixture of new and old masks.
The model's target comes with the model, and the post-processing thresholds
from the run folder's `postprocess.json` (tuned on validation at the end of
training); overrides replace them.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import functools
import glob
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from concurrent import futures

import keras
import numpy as np
import yaml
from PIL import Image
from skimage import measure, segmentation

from cellseg import (ctc, errors, instances, onnx_weights, plan, preprocess, record_fields, resampling, run_folder,
                     segmenter, stacks, staging, targets, tiff, tiling, tracking)
from cellseg import model as model_lib

if errors.TENSORFLOW_INSTALLED:  # SavedModel exports; a machine with JAX alone predicts from .keras checkpoints
    import tensorflow as tf


# A bioimage.io model package written by `cellseg.model_zoo`: its tensors, and its config's cellseg part.
PACKAGE_INPUT, PACKAGE_OUTPUT, PACKAGE_CONFIG = "input", "output", "cellseg"
PACKAGE_DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")
# What runs the network: Keras (any model), or ONNX Runtime on a package's ONNX weights.
ENGINES = ("keras", "onnx")


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded model: `predict` maps tiles [n, h, w, 1] to outputs [n, h, w, C].

    `layout(height, width)` gives the (tile, overlap) of a frame: the whole frame
    or large tiles for a Keras model, the fixed tile of an export.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    target: str
    postprocess: dict | None  # the run folder's postprocess.json, when there is one
    path: str
    layout: Callable[[int, int], tuple]
    max_pixels: int = tiling.MAX_TILE_PIXELS  # pixels per network call (tiles x their pixels)
    min_size: int | None = None  # the run folder's planned minimum size (plan.json), for runs without tuning
    scale: float = 1.0  # the planned input scale (plan.json): frames are resampled by it before the network

    def frames_per_call(self, shape: tuple[int, int]) -> int:
        """Frames of `shape` predicted together: as many as the budget holds when each is one tile."""
        tile, overlap = self.layout(*shape)
        tile_h, tile_w = tiling.pair(tile)
        whole = not overlap and tile_h >= shape[0] and tile_w >= shape[1]
        return tiling.tiles_per_call(tile, self.max_pixels) if whole else 1


def load_model(path: str, tile: int = 0, overlap: int = -1, max_pixels: int = tiling.MAX_TILE_PIXELS,
               engine: str = "keras") -> Model:
    """A model from a run folder, its `checkpoints/best.keras`, its `export/` folder, or a bioimage.io package
    that `cellseg-export` wrote (its Keras weights, in safe mode, or with `engine` "onnx" its ONNX weights run by
    ONNX Runtime; and its tuned thresholds).

    `tile` 0 and `overlap` -1 choose them per frame (`tiling.choose`: the whole
    frame when it holds at most `max_pixels`); an export predicts its own tile
    size. The target comes with the model (an export's output channels tell it);
    the tuned thresholds from `postprocess.json` in the run folder. Raises
    ValueError naming `path` when it is not a cellseg model.
    """
    if os.path.isdir(path) and os.path.exists(os.path.join(path, run_folder.BEST)):
        path = os.path.join(path, run_folder.BEST)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    if path.endswith(".zip"):
        return _load_package(path, tile, overlap, max_pixels, engine)
    if engine != "keras":
        raise ValueError(f"{path}: the {engine} engine runs a package's {engine} weights; give a .zip that "
                         "cellseg-export wrote, or leave the engine at keras")
    predict_batch, target, layout = _load(path, tile, overlap, max_pixels)
    base = os.path.normpath(path)
    run_dir = os.path.dirname(os.path.dirname(base)) if base.endswith(".keras") else os.path.dirname(base)
    return Model(predict_batch, target, read_postprocess(os.path.join(run_dir, run_folder.POSTPROCESS), target, path),
                 path, layout, max_pixels, plan.planned_value(run_dir, "min_size"),
                 float(plan.planned_value(run_dir, "input_scale", 1.0)))


def read_postprocess(path: str, target: str, model: str) -> dict | None:
    """A run folder's tuned thresholds (`postprocess.json`), None when it has none; ValueError naming the
    file when it is not settings of `target` (the target the `model` predicts)."""
    if not os.path.exists(path):
        return None
    remedy = "fix or remove it (without it the target's defaults apply)"
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    if not text.strip():
        raise ValueError(f"{path}: empty; {remedy}")
    try:
        values = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not JSON ({errors.first_line(error)}); {remedy}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of thresholds, got {type(values).__name__}; {remedy}")
    if values.get("target") != target:
        raise ValueError(f"{path} is for target {values.get('target')}, but {model} predicts {target}")
    try:
        instances.Postprocess.from_dict(values)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {errors.first_line(error)}; {remedy}") from None
    return values


def _load_package(path: str, tile: int, overlap: int, max_pixels: int, engine: str = "keras") -> Model:
    """A model from a bioimage.io package made by cellseg: the Keras v3 weights named in its config, or with
    `engine` "onnx" its ONNX weights entry run by ONNX Runtime."""
    try:
        with zipfile.ZipFile(path) as package:
            names = set(package.namelist())
            found = next((name for name in PACKAGE_DESCRIPTIONS if name in names), None)
            if found is None:
                raise ValueError(f"{path}: not a bioimage.io package (no {' or '.join(PACKAGE_DESCRIPTIONS)})")
            description = yaml.safe_load(package.read(found))
            config = (description.get("config") or {}).get(PACKAGE_CONFIG)
            if not config or config.get("weights") not in names:
                raise ValueError(f"{path}: a bioimage.io package, but not one cellseg-export wrote")
            entry = config["weights"] if engine == "keras" else \
                ((description.get("weights") or {}).get(engine) or {}).get("source")
            if entry not in names:
                raise ValueError(f"{path}: the package has no {engine} weights (exported by an earlier cellseg?); "
                                 "export it again, or predict with --engine=keras")
            with tempfile.TemporaryDirectory() as scratch:
                weights = package.extract(entry, scratch)
                if engine == "keras":
                    network = keras.models.load_model(weights, compile=False)  # safe mode
                    run = network.predict_on_batch
                else:
                    # The session holds the model: the extracted file is not needed after this.
                    run = onnx_weights.runner(weights, PACKAGE_INPUT, f"{path}: {entry}")
    except (zipfile.BadZipFile, OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: unreadable package ({errors.first_line(error)})") from error
    depth = config["architecture"]["depth"]
    multiple, radius = 2**depth, model_lib.receptive_radius(depth)
    if tile or overlap >= 0:
        raise ValueError("a package predicts whole frames or tiles it chooses; leave --tile_size and --overlap out")

    def predict_batch(tiles: np.ndarray) -> np.ndarray:  # the package's network is [n, c, y, x]
        return np.moveaxis(np.asarray(run(np.moveaxis(tiles, -1, 1))), 1, -1)

    return Model(predict_batch, targets.check(config["target"]), config.get("postprocess") or None, path,
                 lambda height, width: tiling.choose(height, width, multiple, radius, max_pixels), max_pixels,
                 scale=float(config.get("input_scale", 1.0)))


def load_segmenter(path: str) -> segmenter.Segmenter:
    """The cellseg model of a `.keras` file, loaded in safe mode without its optimizer (prediction and export
    need none); ValueError naming the file when it is truncated or not a cellseg model."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .keras file (truncated or corrupt)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(f"{path}: not a cellseg model ({errors.first_line(error)})") from error
    if not isinstance(model, segmenter.Segmenter):
        raise ValueError(f"{path}: a Keras model, but not a cellseg model (found {type(model).__name__})")
    return model


def _fixed(tile: int, overlap: int):
    """A layout of `tile` x `tile` tiles overlapping by `overlap`, checked now rather than at the first frame."""
    tiling.tile_layout(tile, tile, tile, overlap)
    return lambda height, width: (tile, overlap)


def _load(path: str, tile: int, overlap: int, max_pixels: int):
    """(tiles -> outputs function, target, layout) of a `.keras` file or an export folder."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        # A SavedModel is a program: loading it is safe, running it runs whatever its author put in
        # it. Nothing here calls it before the first frame; its output shape comes from its signature.
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path}: a folder that is neither a run folder (checkpoints/best.keras) nor an "
                             "export (saved_model.pb)")
        if not errors.TENSORFLOW_INSTALLED:
            raise ValueError(errors.needs_tensorflow(f"{path}: an export (SavedModel)") + "; or predict with the "
                             "run folder or its checkpoints/best.keras")
        try:
            exported = tf.saved_model.load(path)
            serve = exported.serve
            spec = serve.get_concrete_function().structured_outputs
        except Exception as error:  # SavedModel loading raises many kinds
            raise ValueError(f"{path}: not a cellseg export ({errors.first_line(error)})") from error
        size = serve.input_signature[0].shape[1] if getattr(serve, "input_signature", None) else None
        if size is not None and tile and size != tile:
            raise ValueError(f"{path}: an export predicts {size} x {size} tiles; pass --tile_size={size} or 0")
        channels = spec.shape[-1] if hasattr(spec, "shape") else None
        by_channels = {target.channels: target.name for target in targets.TABLE}
        if channels not in by_channels:
            raise ValueError(f"{path}: an export with {channels} output channels is not a cellseg model")
        size = size or tile or tiling.DEFAULT_TILE
        layout = _fixed(size, min(tiling.DEFAULT_OVERLAP, size // 4 * 2) if overlap < 0 else overlap)
        # The loaded object owns the variables: the closure keeps it alive.
        return (lambda tiles, _owner=exported: serve(tf.constant(tiles)).numpy()), by_channels[channels], layout
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: not a model; expected a run folder, a .keras file or an export folder")
    model = load_segmenter(path)
    network = segmenter.Network(model)
    multiple = 2 ** model.architecture["depth"]
    if tile:
        if tile % multiple:
            raise ValueError(f"--tile_size={tile} must be a multiple of {multiple} for this model")
        derived = tiling.overlap_for(multiple, model_lib.receptive_radius(model.architecture["depth"]))
        if overlap < 0 and derived >= tile:
            raise ValueError(f"--tile_size={tile} is too small for this network's {derived} px overlap; "
                             "pass a larger --tile_size, 0 (chosen per frame), or an --overlap")
        layout = _fixed(tile, overlap if overlap >= 0 else derived)
    elif overlap >= 0:
        raise ValueError("--overlap needs a --tile_size (whole frames and chosen tiles derive their overlap)")
    else:
        layout = lambda height, width: network.layout(height, width, max_pixels)  # noqa: E731
    return network, model.target, layout


def postprocess_settings(model: Model, overrides: dict | None = None):
    """The model's tuned `instances.Postprocess` (without postprocess.json, its target's defaults and the planned
    minimum size of plan.json), with overrides.

    `overrides` maps mask_threshold, seed_threshold, seed_peaks, min_size to values; None keeps the tuned one.
    """
    untuned = {"target": model.target, **({"min_size": model.min_size} if model.min_size is not None else {})}
    values = dict(model.postprocess or untuned)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return instances.Postprocess.from_dict(values)


def stretched(raw: np.ndarray, percentiles=preprocess.DEFAULT_PERCENTILES) -> np.ndarray:
    """A raw frame as the network saw training frames: the converter's stretch, quantised as in the records."""
    image, _ = preprocess.percentile_stretch(raw, *percentiles)
    return record_fields.dequantize(record_fields.quantize(image))


def network_outputs(model: Model, images: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs [H, W, C] of stretched frames of one shape, predicted together (as many tiles per call
    as the model's pixel budget allows)."""
    tile, overlap = model.layout(*images[0].shape)
    return tiling.predict_frames(model.predict, images, tile, overlap, tiling.tiles_per_call(tile, model.max_pixels))


def segment(raw: np.ndarray, model: Model, settings, percentiles=preprocess.DEFAULT_PERCENTILES):
    """(network outputs [h, w, C] at the model's input scale, labels [H, W]) of a raw frame: the converter's
    stretch, the resampling, the network, instances."""
    outputs = network_outputs(model, [resampling.image(stretched(raw, percentiles), model.scale)])[0]
    return outputs, labels_of(outputs, settings, raw.shape)


def labels_of(outputs: np.ndarray, settings, shape: tuple[int, int]) -> np.ndarray:
    """Instances of network outputs, made at the input scale as tuning made them, at the frame's `shape`."""
    labels = instances.labels_from_outputs(outputs, settings)
    return labels if labels.shape == tuple(shape) else resampling.labels(labels, shape)


CELL_COLUMNS = ("frame", "label", "track", "area", "centroid_x", "centroid_y", "bbox_x0", "bbox_y0", "bbox_x1",
                "bbox_y1", "perimeter", "major_axis", "minor_axis", "eccentricity", "solidity", "mean_intensity")


def measure_cells(frame: str, labels: np.ndarray, raw: np.ndarray, cell_of: dict | None = None) -> list[dict]:
    """One row per cell: area (px), centroid, bounding box (x0, y0 inclusive; x1, y1 exclusive), shape,
    intensity; `cell_of` (label -> track, tracking.Tracker.lineages) fills the track column."""
    rows = []
    for region in measure.regionprops(labels.astype(np.int32), intensity_image=np.asarray(raw, np.float64)):
        y0, x0, y1, x1 = region.bbox
        rows.append({
            "frame": frame, "label": region.label, "track": cell_of.get(region.label, "") if cell_of else "",
            "area": int(region.area),
            "centroid_x": float(region.centroid[1]), "centroid_y": float(region.centroid[0]),
            "bbox_x0": x0, "bbox_y0": y0, "bbox_x1": x1, "bbox_y1": y1,
            "perimeter": float(region.perimeter), "major_axis": float(region.axis_major_length),
            "minor_axis": float(region.axis_minor_length), "eccentricity": float(region.eccentricity),
            "solidity": float(region.solidity), "mean_intensity": float(region.intensity_mean),
        })
    return rows


def grey(raw: np.ndarray) -> np.ndarray:
    """A raw frame as uint8 grey for pictures (0.5 / 99.5 percentile stretch)."""
    return (preprocess.percentile_stretch(raw, 0.5, 99.5)[0] * 255).astype(np.uint8)


def overlay(raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """An RGB uint8 picture of the frame with every cell's contour in yellow."""
    picture = np.repeat(grey(raw)[..., None], 3, axis=-1)
    picture[segmentation.find_boundaries(labels, mode="inner")] = (255, 220, 0)
    return picture


def list_frames(source: str) -> list[tuple[str, str]]:
    """(name, path) of the frames to segment: a CTC sequence folder's t*.tif, a TIFF, or a glob."""
    if os.path.isdir(source):
        paths = ctc.sequence_frames(source)
        if not paths:
            raise ValueError(f"{source}: no frames t000.tif ... in this folder (expected a CTC sequence folder)")
    elif any(c in source for c in "*?["):
        paths = sorted(glob.glob(source))
        if not paths:
            raise ValueError(f"{source}: no file matches")
    elif os.path.isfile(source):
        paths = [source]
    else:
        raise ValueError(f"{source}: no such file or folder")
    return [(os.path.splitext(os.path.basename(p))[0], p) for p in paths]


def is_sequence(source: str) -> bool:
    """Whether `source` is a CTC sequence folder (frames t000.tif ...) or a stack, which are tracked."""
    return sequence_name(source) is not None


def sequence_name(source: str) -> str | None:
    """The sequence a source is: NN of a CTC sequence folder, the stem of a stack; None for other sources."""
    if os.path.isdir(source) and ctc.sequence_frames(source):
        return os.path.basename(os.path.normpath(source))
    if stacks.is_stack(source):
        return stacks.stem(source)
    return None


CELLS_TABLE, OVERLAYS = "cells.csv", "overlays"


def result_folder(sequence: str | None) -> str:
    """The folder a source's labels go to: <sequence>_RES for a sequence, labels otherwise."""
    return f"{sequence}_RES" if sequence else "labels"


def result_path(sequence: str | None, output_dir: str, name: str) -> str:
    """Where a frame's labels go: <sequence>_RES/maskTTT.tif for a sequence's frame tTTT, labels/<name>.tif
    otherwise."""
    frame = ctc.frame_index(name)
    if sequence and frame:
        return ctc.result_path(output_dir, sequence, frame[0], digits=frame[1])
    return os.path.join(output_dir, result_folder(None), f"{name}.tif")


def result_parts(sequence: str | None) -> tuple[str, ...]:
    """What one prediction writes into its output folder, replaced together by a rerun."""
    return result_folder(sequence), CELLS_TABLE, tracking.TRACKS_TABLE, OVERLAYS


def check_writable(folder: str) -> None:
    """ValueError in one line unless `folder` can be made and written to."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"{folder}: cannot write there ({error.strerror or error})") from None


def run_prediction(source: str, model_path: str, output_dir: str, tile: int = 0, overlap: int = -1,
                   overrides: dict | None = None, overlays: bool = False, progress=None, tta: bool = True,
                   max_pixels: int = tiling.MAX_TILE_PIXELS, track: bool = True, pixel_size: float | None = None,
                   frame_interval: float | None = None, engine: str = "keras") -> dict:
    """Segment every frame of `source` into `output_dir`; returns counts, the settings and the frames that failed.

    `tile` 0 and `overlap` -1 choose them per frame (see `load_model`); `overrides`
    replace the tuned post-processing thresholds (see `postprocess_settings`); `tta`
    averages the network's outputs over the 8 flips and quarter turns of each tile.
    Frames stream (see the module's doc) into a staging folder that replaces an earlier
    result's parts (`result_parts`) only when every frame is done (`staged`); frames that
    cannot be read are skipped and named. Nothing is moved into place when no frame could be
    segmented, or on an error: ValueError in one line, also for a folder that cannot be
    written (a full disk), and `output_dir` is left as it was.
    A CTC sequence folder or a stack is tracked as it streams (`track`, `cellseg.tracking`):
    one label per track in the masks, `res_track.txt` beside them, `tracks.csv`
    (lengths and speeds in um and minutes with `pixel_size` and `frame_interval`; a stack's
    own pixel size when `pixel_size` is None). `engine` "onnx" runs a package's ONNX weights (`load_model`).
    """
    sequence = sequence_name(source)
    with contextlib.ExitStack() as opened:
        if sequence and not os.path.isdir(source):
            stack = opened.enter_context(stacks.Stack(source))
            pixel_size = stack.pixel_size if pixel_size is None else pixel_size
            frames = [(name, functools.partial(stack.frame, index), f"{source}, frame {index}")
                      for index, name in enumerate(stack.names())]
        else:
            frames = [(name, functools.partial(tiff.read, path), path) for name, path in list_frames(source)]
        check_writable(output_dir)
        model = load_model(model_path, tile, overlap, max_pixels, engine)
        if tta:
            model = dataclasses.replace(model, predict=tiling.averaged_over_symmetries(model.predict))
        settings = postprocess_settings(model, overrides)
        scratch = opened.enter_context(staging.staged(output_dir, result_parts(sequence), "predict"))
        try:
            found = _segment_frames(frames, model, settings, sequence, scratch, overlays, progress,
                                    tracking.Recorder() if track and sequence else None, pixel_size, frame_interval)
        except OSError as error:
            where = os.path.join(output_dir, os.path.relpath(error.filename, scratch)) if error.filename else output_dir
            raise ValueError(f"{where}: cannot write ({error.strerror or errors.first_line(error)}); nothing "
                             f"written, {output_dir} is as it was") from None
        if not found["frames"]:
            reason = f" ({found['failed'][0]})" if found["failed"] else ""
            raise ValueError(f"{source}: no frame could be segmented{reason}; nothing written")
    return {**found, "target": model.target, "postprocess": settings.to_dict(), "tuned": model.postprocess is not None}


def _segment_frames(frames: list[tuple], model: Model, settings, sequence: str | None, output_dir: str,
                    overlays: bool, progress, recorder, pixel_size: float | None,
                    frame_interval: float | None) -> dict:
    """Stream `frames` (name, load, where) through the network into `output_dir`: labels, cells.csv,
    overlays, and with a `recorder` (tracking.Recorder) res_track.txt and tracks.csv."""
    failed = []
    cells_table = os.path.join(output_dir, CELLS_TABLE)
    with _naming(cells_table), open(cells_table, "w", newline="") as table, \
            futures.ThreadPoolExecutor(1, "cellseg-read") as reader, \
            futures.ThreadPoolExecutor(1, "cellseg-instances") as finisher:
        writer = csv.DictWriter(table, fieldnames=CELL_COLUMNS)
        writer.writeheader()

        last = {}

        def finish(batch, outputs):
            rows = []
            for (name, raw, _), output in zip(batch, outputs):
                rows += write_frame(name, raw, labels_of(output, settings, raw.shape), sequence, output_dir,
                                    recorder, overlays)
                last["raw"] = raw
            return rows

        pending = collections.deque()  # (instances of a batch, made while the network runs, its frames)
        written = {"cells": 0, "frames": 0}

        def collect():
            rows, count = pending.popleft()
            rows = rows.result()
            writer.writerows(rows)
            written["cells"] += len(rows)
            written["frames"] += count
            if progress:
                progress(written["frames"] + len(failed), len(frames))

        for batch, unread in _batches(_read_ahead(reader, frames, model.scale), model):
            failed += unread
            if batch:
                outputs = network_outputs(model, [image for _, _, image in batch])
                pending.append((finisher.submit(finish, batch, outputs), len(batch)))
            while len(pending) > 1:
                collect()
        while pending:
            collect()
    tracked = None
    if recorder and written["frames"]:
        tracked = write_tracks(recorder, sequence, output_dir, last["raw"], overlays, pixel_size, frame_interval)
    return {"frames": written["frames"], "cells": written["cells"], "failed": failed, "tracking": tracked}


def write_frame(name: str, raw: np.ndarray, labels: np.ndarray, sequence: str | None, output_dir: str,
                recorder: tracking.Recorder | None = None, overlays: bool = False) -> list[dict]:
    """Write one segmented frame (tracked first with a `recorder`, by its frame number: the frames that could not
    be read are gaps) and its overlay; returns its cells.csv rows."""
    if recorder:
        labels = recorder.add(labels, ctc.frame_index(name)[0])
    out = result_path(sequence, output_dir, name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with _naming(out):
        tiff.write_labels(out, labels)
    if overlays:
        os.makedirs(os.path.join(output_dir, OVERLAYS), exist_ok=True)
        picture = os.path.join(output_dir, OVERLAYS, f"{name}.png")
        with _naming(picture):
            Image.fromarray(overlay(raw, labels)).save(picture)
    return measure_cells(name, labels, raw, recorder.tracker.cell if recorder else None)


def write_tracks(recorder: tracking.Recorder, sequence: str | None, output_dir: str, last_raw: np.ndarray,
                 overlays: bool = False, pixel_size: float | None = None, frame_interval: float | None = None) -> dict:
    """A tracked sequence's res_track.txt, tracks.csv and (with `overlays`) pictures; its track and division
    counts."""
    folder = os.path.join(output_dir, result_folder(sequence))
    with _naming(os.path.join(folder, ctc.TRACKS)):  # or tracks.csv: a write error has no file name
        rows = recorder.write(folder, os.path.join(output_dir, tracking.TRACKS_TABLE), pixel_size, frame_interval)
    if overlays:
        with _naming(os.path.join(output_dir, OVERLAYS)):
            recorder.draw(os.path.join(output_dir, OVERLAYS), grey(last_raw), pixel_size, frame_interval)
    return {"tracks": len(rows), "divisions": len(recorder.tracker.divided)}


@contextlib.contextmanager
def _naming(path: str):
    """OSErrors raised in the block carry `path` when they name no file (a failed write, as on a full disk,
    names none in rasterio, Pillow or a file's write)."""
    try:
        yield
    except OSError as error:
        if error.filename:
            raise
        raise OSError(error.errno, error.strerror or errors.first_line(error), path) from error


READ_AHEAD = 4  # frames read and stretched ahead of the network


def _read(name: str, load: Callable[[], np.ndarray], where: str, scale: float = 1.0):
    """(name, raw, stretched image at `scale`) of a frame, or (name, None, the reason it cannot be segmented)."""
    try:
        raw = load()
    except ValueError as error:
        return name, None, str(error)
    if not np.isfinite(raw).all():
        return name, None, f"{where}: holds NaN or infinite values; not segmented"
    return name, raw, resampling.image(stretched(raw), scale)


def _read_ahead(pool: futures.Executor, frames: list[tuple], scale: float = 1.0) -> Iterator[tuple]:
    """`_read` of each frame (name, load, where) at `scale` in order, at most READ_AHEAD of them in flight."""
    queue = collections.deque()
    for frame in frames:
        queue.append(pool.submit(_read, *frame, scale))
        if len(queue) > READ_AHEAD:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()


def _batches(read: Iterator[tuple], model: Model) -> Iterator[tuple[list, list]]:
    """(consecutive frames of one shape, predicted together; the frames met before them that cannot be
    read), as many frames as `model.frames_per_call` allows."""
    batch, unread = [], []
    for name, raw, image in read:
        if raw is None:
            unread.append(image)
            continue
        if batch and (image.shape != batch[0][2].shape or len(batch) >= model.frames_per_call(image.shape)):
            yield batch, unread
            batch, unread = [], []
        batch.append((name, raw, image))
    yield batch, unread
