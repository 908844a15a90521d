"""Segmenting frames with a trained model: loading it, the frames, instances, what is written.

`run_prediction` segments a CTC sequence folder, a TIFF or a glob and writes
CTC results (`NN_RES/maskTTT.tif`), `cells.csv` and, on request, overlays.
Frames of any size go through the overlap-tile strategy (`cellseg.tiling`).
The model's target comes with the model, and the post-processing thresholds
from the run folder's `postprocess.json` (tuned on validation at the end of
training); overrides replace them.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import tempfile
import zipfile
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from skimage import measure, segmentation

from cellseg import ctc, errors, instances, preprocess, run_folder, schema, segmenter, targets, tiff, tiling


@dataclasses.dataclass(frozen=True)
class Model:
    """A loaded model: `predict` maps tiles [n, tile, tile, 1] to outputs [n, tile, tile, C]."""

    predict: Callable[[np.ndarray], np.ndarray]
    target: str
    postprocess: dict | None  # the run folder's postprocess.json, when there is one
    path: str


def load_model(path: str, tile: int) -> Model:
    """A model from a run folder, its `checkpoints/best.keras`, or its `export/` folder.

    The target comes with the model (an export's output channels tell it); the
    tuned thresholds from `postprocess.json` in the run folder. Raises
    ValueError naming `path` when it is not a cellseg model.
    """
    if os.path.isdir(path) and os.path.exists(os.path.join(path, run_folder.BEST)):
        path = os.path.join(path, run_folder.BEST)
    predict_batch, target = _load(path, tile)
    base = os.path.normpath(path)
    run_dir = os.path.dirname(os.path.dirname(base)) if base.endswith(".keras") else os.path.dirname(base)
    tuned = os.path.join(run_dir, run_folder.POSTPROCESS)
    postprocess = None
    if os.path.exists(tuned):
        with open(tuned) as handle:
            postprocess = json.load(handle)
        if postprocess.get("target") != target:
            raise ValueError(f"{tuned} is for target {postprocess.get('target')}, but {path} predicts {target}")
    return Model(predict_batch, target, postprocess, path)


def _load(path: str, tile: int):
    """(tiles -> outputs function, target) of a `.keras` file or an export folder."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        # A SavedModel is a program: loading it is safe, running it runs whatever its author put in
        # it. Nothing here calls it before the first frame; its output shape comes from its signature.
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{path}: a folder that is neither a run folder (checkpoints/best.keras) nor an "
                             "export (saved_model.pb)")
        try:
            exported = tf.saved_model.load(path)
            serve = exported.serve
            spec = serve.get_concrete_function().structured_outputs
        except Exception as error:  # SavedModel loading raises many kinds
            raise ValueError(f"{path}: not a cellseg export ({errors.first_line(error)})") from error
        size = serve.input_signature[0].shape[1] if getattr(serve, "input_signature", None) else None
        if size is not None and size != tile:
            raise ValueError(f"{path}: an export predicts {size} x {size} tiles; pass --tile_size={size}")
        channels = spec.shape[-1] if hasattr(spec, "shape") else None
        by_channels = {target.channels: target.name for target in targets.TABLE}
        if channels not in by_channels:
            raise ValueError(f"{path}: an export with {channels} output channels is not a cellseg model")
        # The loaded object owns the variables: the closure keeps it alive.
        return (lambda tiles, _owner=exported: serve(tf.constant(tiles)).numpy()), by_channels[channels]
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: not a model; expected a run folder, a .keras file or an export folder")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .keras file (truncated or corrupt)")
    try:
        model = keras.models.load_model(path, compile=False)  # safe mode; prediction needs no optimizer
    except Exception as error:
        raise ValueError(f"{path}: not a cellseg model ({errors.first_line(error)})") from error
    if not isinstance(model, segmenter.Segmenter):
        raise ValueError(f"{path}: a Keras model, but not a cellseg model (found {type(model).__name__})")
    depth = model.architecture["depth"]
    if tile % 2**depth:
        raise ValueError(f"--tile_size={tile} must be a multiple of {2**depth} for this model")
    network = segmenter.output_model(model, tile)
    return network.predict_on_batch, model.target


def postprocess_settings(model: Model, overrides: dict | None = None):
    """The model's tuned `instances.Postprocess` (its target's defaults without postprocess.json), with overrides.

    `overrides` maps mask_threshold, seed_threshold, min_size to values; None keeps the tuned one.
    """
    values = dict(model.postprocess or {"target": model.target})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return instances.Postprocess.from_dict(values)


def segment(raw: np.ndarray, model: Model, tile: int, overlap: int, settings, percentiles=(2.0, 98.0)):
    """(network outputs [H, W, C], labels) of a raw frame: the converter's stretch, tiles, instances."""
    image, _ = preprocess.percentile_stretch(raw, *percentiles)
    image = schema.dequantize(schema.quantize(image))  # exactly what training read from the records
    outputs = tiling.predict_outputs(model.predict, image, tile, overlap)
    return outputs, instances.labels_from_outputs(outputs, settings)


CELL_COLUMNS = ("frame", "label", "area", "centroid_x", "centroid_y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
                "perimeter", "major_axis", "minor_axis", "eccentricity", "solidity", "mean_intensity")


def measure_cells(frame: str, labels: np.ndarray, raw: np.ndarray) -> list[dict]:
    """One row per cell: area (px), centroid, bounding box (x0, y0 inclusive; x1, y1 exclusive), shape, intensity."""
    rows = []
    for region in measure.regionprops(labels.astype(np.int32), intensity_image=np.asarray(raw, np.float64)):
        y0, x0, y1, x1 = region.bbox
        rows.append({
            "frame": frame, "label": region.label, "area": int(region.area),
            "centroid_x": float(region.centroid[1]), "centroid_y": float(region.centroid[0]),
            "bbox_x0": x0, "bbox_y0": y0, "bbox_x1": x1, "bbox_y1": y1,
            "perimeter": float(region.perimeter), "major_axis": float(region.axis_major_length),
            "minor_axis": float(region.axis_minor_length), "eccentricity": float(region.eccentricity),
            "solidity": float(region.solidity), "mean_intensity": float(region.intensity_mean),
        })
    return rows


def overlay(raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """An RGB uint8 picture of the frame with every cell's contour in yellow."""
    grey = (preprocess.percentile_stretch(raw, 0.5, 99.5)[0] * 255).astype(np.uint8)
    picture = np.repeat(grey[..., None], 3, axis=-1)
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


def result_path(source: str, output_dir: str, name: str) -> str:
    """Where a frame's labels go: NN_RES/maskTTT.tif for a CTC sequence folder NN, labels/<name>.tif otherwise."""
    frame = ctc.frame_index(name)
    if os.path.isdir(source) and frame:
        sequence = os.path.basename(os.path.normpath(source))
        return ctc.result_path(output_dir, sequence, frame[0], digits=frame[1])
    return os.path.join(output_dir, "labels", f"{name}.tif")


def check_writable(folder: str) -> None:
    """ValueError in one line unless `folder` can be made and written to."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"{folder}: cannot write there ({error.strerror or error})") from None


def run_prediction(source: str, model_path: str, output_dir: str, tile: int = tiling.DEFAULT_TILE,
                   overlap: int = tiling.DEFAULT_OVERLAP, overrides: dict | None = None, overlays: bool = False,
                   progress=None, tta: bool = True) -> dict:
    """Segment every frame of `source` into `output_dir`; returns counts, the settings and the frames that failed.

    `overrides` replace the tuned post-processing thresholds (see `postprocess_settings`); `tta`
    averages the network's outputs over the 8 flips and quarter turns of each tile.
    """
    frames = list_frames(source)
    check_writable(output_dir)
    model = load_model(model_path, tile)
    if tta:
        model = dataclasses.replace(model, predict=tiling.averaged_over_symmetries(model.predict))
    settings = postprocess_settings(model, overrides)
    rows, failed = [], []
    for done, (name, path) in enumerate(frames, start=1):
        try:
            raw = tiff.read(path)
        except ValueError as error:
            failed.append(str(error))
            continue
        if not np.isfinite(raw).all():
            failed.append(f"{path}: holds NaN or infinite values; not segmented")
            continue
        _, labels = segment(raw, model, tile, overlap, settings)
        out = result_path(source, output_dir, name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tiff.write_labels(out, labels)
        rows += measure_cells(name, labels, raw)
        if overlays:
            os.makedirs(os.path.join(output_dir, "overlays"), exist_ok=True)
            Image.fromarray(overlay(raw, labels)).save(os.path.join(output_dir, "overlays", f"{name}.png"))
        if progress:
            progress(done, len(frames))
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "cells.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CELL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return {"frames": len(frames) - len(failed), "cells": len(rows), "failed": failed,
            "target": model.target, "postprocess": settings.to_dict(),
            "tuned": model.postprocess is not None}
