"""Whole-frame prediction of any size by the overlap-tile strategy (U-Net paper, Fig. 2).

The frame is mirror-padded by half the overlap on each side (and up to a whole
number of strides), cut into fixed-size tiles that overlap by `overlap` pixels,
predicted in batches, and each tile's central `tile - overlap` square is kept.
When half the overlap covers the network's receptive field, the result equals
a prediction of the whole mirrored frame at once, without seams, while the
model keeps one fixed input shape. `cellseg-predict` segments a CTC sequence folder, a TIFF or a glob and writes
CTC results (`NN_RES/maskTTT.tif`), `cells.csv` and, on request, overlays.

The model's target (binary, three_class or distance) comes with the model, and
the post-processing thresholds from the run folder's `postprocess.json` (tuned
on validation at the end of training); flags override them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
from collections.abc import Callable

import numpy as np

from cellseg import ctc

DEFAULT_TILE, DEFAULT_OVERLAP = 256, 64


def tile_layout(height: int, width: int, tile: int, overlap: int):
    """(stride, tiles down, tiles across, padding per side as ((top, bottom), (left, right)))."""
    if overlap % 2 or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be even and smaller than the tile ({tile}), got {overlap}")
    stride, margin = tile - overlap, overlap // 2
    down, across = math.ceil(height / stride), math.ceil(width / stride)
    padding = ((margin, down * stride - height + margin), (margin, across * stride - width + margin))
    return stride, down, across, padding


def predict_outputs(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int,
    overlap: int,
    batch_size: int = 4,
) -> np.ndarray:
    """Per-pixel network outputs [H, W, C] of a 2-D image of any size.

    `predict_batch` maps tiles [n, tile, tile, 1] float32 to outputs [n, tile,
    tile, C] (a Keras model's `predict_on_batch`, or an exported signature).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape
    stride, down, across, padding = tile_layout(height, width, tile, overlap)
    # numpy's symmetric padding mirrors again and again when the pad exceeds the frame.
    padded = np.pad(image, padding, mode="symmetric")
    corners = [(row * stride, col * stride) for row in range(down) for col in range(across)]
    margin = overlap // 2
    result = None
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = np.stack([padded[y : y + tile, x : x + tile] for y, x in chunk])[..., None]
        outputs = np.asarray(predict_batch(tiles), np.float32)
        if result is None:
            result = np.zeros((down * stride, across * stride, outputs.shape[-1]), np.float32)
        for (y, x), output in zip(chunk, outputs):
            result[y : y + stride, x : x + stride] = output[margin : margin + stride, margin : margin + stride]
    return result[:height, :width]


# --- models, frames and what is written per frame --------------------------------------


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
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "checkpoints", "best.keras")):
        path = os.path.join(path, "checkpoints", "best.keras")
    predict_batch, target = _load(path, tile)
    base = os.path.normpath(path)
    run_dir = os.path.dirname(os.path.dirname(base)) if base.endswith(".keras") else os.path.dirname(base)
    tuned = os.path.join(run_dir, "postprocess.json")
    postprocess = None
    if os.path.exists(tuned):
        with open(tuned) as handle:
            postprocess = json.load(handle)
        if postprocess.get("target") != target:
            raise ValueError(f"{tuned} is for target {postprocess.get('target')}, but {path} predicts {target}")
    return Model(predict_batch, target, postprocess, path)


def _load(path: str, tile: int):
    """(tiles -> outputs function, target) of a `.keras` file or an export folder."""
    import keras
    import tensorflow as tf

    from cellseg import targets, training  # training registers the cellseg classes with Keras

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
            raise ValueError(f"{path}: not a cellseg export ({_first_line(error)})") from error
        size = serve.input_signature[0].shape[1] if getattr(serve, "input_signature", None) else None
        if size is not None and size != tile:
            raise ValueError(f"{path}: an export predicts {size} x {size} tiles; pass --tile_size={size}")
        channels = spec.shape[-1] if hasattr(spec, "shape") else None
        by_channels = {count: name for name, count in targets.CHANNELS.items()}
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
        raise ValueError(f"{path}: not a cellseg model ({_first_line(error)})") from error
    if not isinstance(model, training.Segmenter):
        raise ValueError(f"{path}: a Keras model, but not a cellseg model (found {type(model).__name__})")
    depth = model.architecture["depth"]
    if tile % 2**depth:
        raise ValueError(f"--tile_size={tile} must be a multiple of {2**depth} for this model")
    network = training.output_model(model, tile)
    return network.predict_on_batch, model.target


def postprocess_settings(model: Model, overrides: dict | None = None):
    """The model's tuned `instances.Postprocess` (its target's defaults without postprocess.json), with overrides.

    `overrides` maps mask_threshold, seed_threshold, min_size to values; None keeps the tuned one.
    """
    from cellseg import instances

    values = dict(model.postprocess or {"target": model.target})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return instances.Postprocess.from_dict(values)


def segment(raw: np.ndarray, model: Model, tile: int, overlap: int, settings, percentiles=(2.0, 98.0)):
    """(network outputs [H, W, C], labels) of a raw frame: the converter's stretch, tiles, instances."""
    from cellseg import instances, preprocess, schema

    image, _ = preprocess.percentile_stretch(raw, *percentiles)
    image = schema.dequantize(schema.quantize(image))  # exactly what training read from the records
    outputs = predict_outputs(model.predict, image, tile, overlap)
    return outputs, instances.labels_from_outputs(outputs, settings)


CELL_COLUMNS = ("frame", "label", "area", "centroid_x", "centroid_y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1",
                "perimeter", "major_axis", "minor_axis", "eccentricity", "solidity", "mean_intensity")


def measure_cells(frame: str, labels: np.ndarray, raw: np.ndarray) -> list[dict]:
    """One row per cell: area (px), centroid, bounding box (x0, y0 inclusive; x1, y1 exclusive), shape, intensity."""
    from skimage import measure

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
    from skimage import segmentation

    from cellseg import preprocess

    grey = (preprocess.percentile_stretch(raw, 0.5, 99.5)[0] * 255).astype(np.uint8)
    picture = np.repeat(grey[..., None], 3, axis=-1)
    picture[segmentation.find_boundaries(labels, mode="inner")] = (255, 220, 0)
    return picture


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def list_frames(source: str) -> list[tuple[str, str]]:
    """(name, path) of the frames to segment: a CTC sequence folder's t*.tif, a TIFF, or a glob."""
    import glob

    if os.path.isdir(source):
        paths = sorted(p for p in glob.glob(os.path.join(source, "t*.tif*")) if ctc.FRAME.match(os.path.basename(p)))
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
    match = ctc.FRAME.match(name + ".tif")
    if os.path.isdir(source) and match:
        sequence = os.path.basename(os.path.normpath(source))
        return ctc.result_path(output_dir, sequence, int(match.group(1)), digits=len(match.group(1)))
    return os.path.join(output_dir, "labels", f"{name}.tif")


def check_writable(folder: str) -> None:
    """ValueError in one line unless `folder` can be made and written to."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"{folder}: cannot write there ({error.strerror or error})") from None


def run_prediction(source: str, model_path: str, output_dir: str, tile: int = DEFAULT_TILE,
                   overlap: int = DEFAULT_OVERLAP, overrides: dict | None = None, overlays: bool = False,
                   progress=None) -> dict:
    """Segment every frame of `source` into `output_dir`; returns counts, the settings and the frames that failed.

    `overrides` replace the tuned post-processing thresholds (see `postprocess_settings`).
    """
    import csv

    from PIL import Image

    from cellseg import tiff

    frames = list_frames(source)
    check_writable(output_dir)
    model = load_model(model_path, tile)
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


# --- command line -------------------------------------------------------------------------


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model", None, "A cellseg model: a run folder, its checkpoints/best.keras, or its export/.")
    flags.DEFINE_string("input", None, "A CTC sequence folder (e.g. data/X/02), a TIFF, or a glob of TIFFs.")
    flags.DEFINE_string("output_dir", None, "Where NN_RES/ (or labels/), cells.csv and overlays/ go.")
    flags.DEFINE_integer("tile_size", DEFAULT_TILE, "Square tile side; a multiple of 2**depth.", lower_bound=16)
    flags.DEFINE_integer("overlap", DEFAULT_OVERLAP, "Overlap of neighbouring tiles (even); half of it is the seam "
                         "margin.", lower_bound=0)
    flags.DEFINE_float("mask_threshold", None, "Cell mask threshold: cell probability (binary, three_class) or "
                       "cell distance (distance). Default: postprocess.json, else the target's default.")
    flags.DEFINE_float("seed_threshold", None, "Seed threshold: h-maxima height in px (binary), interior "
                       "probability (three_class), cell minus neighbour distance (distance). Default: as above.")
    flags.DEFINE_integer("min_size", None, "Objects of fewer pixels are dropped. Default: as above.", lower_bound=0)
    flags.DEFINE_bool("overlays", False, "Write overlays/<frame>.png with cell contours over each frame.")
    flags.mark_flags_as_required(["model", "input", "output_dir"])


def _main(argv):
    import sys

    from absl import app, flags
    from absl import logging as absl_logging

    from cellseg.progress import Progress

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    FLAGS = flags.FLAGS
    if not FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        overrides = {"mask_threshold": FLAGS.mask_threshold, "seed_threshold": FLAGS.seed_threshold,
                     "min_size": FLAGS.min_size}
        result = run_prediction(FLAGS.input, FLAGS.model, FLAGS.output_dir, FLAGS.tile_size, FLAGS.overlap,
                                overrides, FLAGS.overlays, Progress("segmenting frames"))
    except ValueError as error:
        sys.exit(f"cellseg-predict: {error}")
    except KeyboardInterrupt:
        sys.exit("cellseg-predict: interrupted; the frames written so far are kept")
    settings = result["postprocess"]
    source = "tuned on validation (postprocess.json)" if result["tuned"] else "the target's defaults"
    print(f"target {result['target']}; post-processing: mask threshold {settings['mask_threshold']:g}, "
          f"seed threshold {settings['seed_threshold']:g}, min size {settings['min_size']} px ({source}"
          f"{', with flags' if any(v is not None for v in overrides.values()) else ''})")
    print(f"segmented {result['frames']} frame(s), {result['cells']} cells; "
          f"labels and cells.csv in {FLAGS.output_dir}")
    if result["failed"]:
        for reason in result["failed"]:
            print(f"failed: {reason}", file=sys.stderr)
        sys.exit(f"cellseg-predict: {len(result['failed'])} frame(s) failed; the others were written")


def run():
    import os as _os

    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app

    _define_flags()
    app.run(_main)


if __name__ == "__main__":
    from cellseg import predict

    predict.run()
