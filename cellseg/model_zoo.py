"""A trained run as a BioImage Model Zoo package (bioimage.io model format 0.5), for Fiji, napari, ilastik.

`export(run_dir, output)` builds the package with the `bioimageio.spec` library
(the optional extra `cellseg[bioimageio]`) and validates it as it writes:

- the network with its target's activation, in three weight formats: Keras v3
  (`.keras`, built-in Keras layers only, so `keras.models.load_model` reads it
  in safe mode without cellseg), a TensorFlow SavedModel bundle converted
  from it (endpoint `serve` and signature `serving_default`, {"input"} to
  {"output"}) and ONNX (`cellseg.onnx_weights`, opset 17, which ONNX Runtime
  and tools built on it run without TensorFlow), all taking any height
  and width the spec's sizes allow;
- the input [batch, channel, y, x] with the spec's own `scale_range` (each
  frame's percentiles, those the run's records were stretched with) and `clip`
  to [0, 1]: cellseg's percentile stretch; the output named by the target's
  channels, with a halo of the network's receptive radius (rounded up to the
  stride) for tiling;
- test input and output computed by the exported SavedModel, a cover (the test
  frame with the cells cellseg finds), documentation of the training data and of
  what the network gives, and the run's tuned post-processing thresholds in the
  package's `config["cellseg"]`.

Keras 3's bilinear UpSampling2D needs static heights and widths, so the packaged
network has each bilinear x2 upsampling rebuilt from shape-free layers that
compute the same values: nearest x2 upsampling, a fixed [1/4, 1/2, 1/4]
smoothing and an edge correction (`portable_network`; a test checks it against
cellseg's own network). `cellseg-predict` takes such a package as its `--model`
(`predict.load_model`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import cellseg
from cellseg import (errors, instances, model, onnx_weights, plan, predict, preprocess, records as records_lib,
                     run_folder, segmenter, targets, tiff, tiling)

# bioimageio.core runs Keras weights on the backend this names, and sets it to torch when unset.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
try:  # the optional extra, cellseg[bioimageio]
    from bioimageio.core import test_model
    from bioimageio.spec import load_description, save_bioimageio_package
    from bioimageio.spec.model import v0_5
except ImportError:
    v0_5 = None
NEEDS_EXTRA = "needs the bioimageio extra: pip install 'cellseg[bioimageio]'"

INPUT, OUTPUT = predict.PACKAGE_INPUT, predict.PACKAGE_OUTPUT
SMOOTH = np.array([0.25, 0.5, 0.25], np.float32)  # bilinear x2 = nearest x2, then this, then EDGE's correction
EDGE = np.array([-1 / 3, 5 / 3, -1 / 3], np.float32)  # applied to ones: 4/3 on the first and last row and column
CITATION = ("Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
            "MICCAI 2015.", "10.1007/978-3-319-24574-4_28")


@dataclasses.dataclass(frozen=True)
class About:
    """What the package says of itself."""

    name: str = ""  # default: "cellseg <target> U-Net (<run folder's name>)"
    description: str = ""
    authors: tuple[str, ...] = ("cellseg",)
    version: str = "0.1.0"
    license: str = "MIT"


def _depthwise(x, taps: np.ndarray, name: str):
    layer = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, trainable=False, name=name)
    smoothed = layer(x)
    layer.set_weights([np.repeat(np.outer(taps, taps)[:, :, None, None], x.shape[-1], axis=2)])
    return smoothed


def _call(layer, *args, **kwargs):
    """`clone_model`'s call_function: each layer as it is, a bilinear x2 upsampling by shape-free layers."""
    if not isinstance(layer, keras.layers.UpSampling2D) or layer.interpolation != "bilinear":
        return layer(*args, **kwargs)
    if tuple(layer.size) != (2, 2):
        raise ValueError(f"{layer.name}: cannot rebuild bilinear x{layer.size} upsampling")
    nearest = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{layer.name}_nearest")(args[0])
    ones = keras.layers.Rescaling(0.0, offset=1.0, name=f"{layer.name}_ones")(nearest)
    return keras.layers.Multiply(name=f"{layer.name}_bilinear")(
        [_depthwise(nearest, SMOOTH, f"{layer.name}_smooth"), _depthwise(ones, EDGE, f"{layer.name}_edges")])


def portable_network(trained: segmenter.Segmenter) -> keras.Model:
    """[n, 1, h, w] stretched frames -> [n, C, h, w] outputs for any h, w multiples of 2**depth, in built-in
    Keras layers sharing the trained weights."""
    fixed = segmenter.output_model(trained)
    channels_last = keras.models.clone_model(fixed, input_tensors=keras.Input((None, None, 1)),
                                             clone_function=lambda layer: layer, call_function=_call)
    frames = keras.Input((1, None, None), name=INPUT)
    outputs = keras.layers.Permute((3, 1, 2), name=OUTPUT)(channels_last(keras.layers.Permute((2, 3, 1))(frames)))
    return keras.Model(frames, outputs, name=f"cellseg_{trained.target}")


def _saved_model(network: keras.Model, folder: str) -> None:
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint("serve", lambda frames: {OUTPUT: network(frames, training=False)},
                         input_signature=[tf.TensorSpec([None, 1, None, None], tf.float32, name=INPUT)])
    archive.write_out(folder, verbose=False)


def _zip(folder: str, path: str) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, names in os.walk(folder):
            for name in names:
                archive.write(os.path.join(root, name), os.path.relpath(os.path.join(root, name), folder))
    return path


def sizes(depth: int) -> tuple[int, int, int]:
    """(halo, smallest side, step) of a package's frames: the halo is the receptive radius rounded up to
    the stride (the margin cellseg's tiles keep), and the spec wants the smallest side above twice it."""
    step = 2**depth
    halo = tiling.overlap_for(step, model.receptive_radius(depth)) // 2
    return halo, (2 * halo // step + 1) * step, step


def _test_frame(raw: np.ndarray, smallest: int, step: int) -> np.ndarray:
    """`raw`, mirror-padded to a size the package takes (at least `smallest`, then multiples of `step`)."""
    target = [max(smallest, smallest + -(-(side - smallest) // step) * step) for side in raw.shape]
    return np.pad(raw, [(0, t - s) for t, s in zip(target, raw.shape)], mode="symmetric").astype(np.float32)


def _read_json(path: str) -> dict:
    """A JSON object from a file, {} when there is none; ValueError naming the file when it is not one."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, "rb") as handle:
            found = json.loads(handle.read() or b"null")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable ({errors.first_line(error)})") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path}: {'empty' if found is None else 'not a JSON object'}")
    return found


def export(run_dir: str, output: str, test_image: str | None = None, about: About = About(),
           overwrite: bool = False) -> str:
    """Write the run folder's best checkpoint as the package `output` (.zip), validated by bioimageio.spec.

    The test input is `test_image` (a raw 2-D TIFF), else the first validation
    frame of the run's records. An existing `output` is refused unless `overwrite`,
    and replaced only by a complete package. Returns the spec's validation status.
    """
    if v0_5 is None:
        raise ValueError(f"exporting to bioimage.io {NEEDS_EXTRA}")
    best = os.path.join(run_dir, run_folder.BEST)
    if not os.path.isfile(best):
        raise ValueError(f"{run_dir}: not a run folder (no {run_folder.BEST})")
    if not output.endswith(".zip"):
        raise ValueError(f"{output}: a package is a .zip file")
    if os.path.lexists(output) and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    trained = predict.load_segmenter(best)
    row = targets.get(trained.target)
    depth = trained.architecture["depth"]
    halo, smallest, step = sizes(depth)
    metrics = _read_json(os.path.join(run_dir, run_folder.METRICS))
    records_dir = metrics.get("records_dir", "")
    records = _read_json(os.path.join(records_dir, "dataset.json")) if records_dir else {}
    percentiles = tuple(float(p) for p in records.get("settings", {}).get("percentiles",
                                                                          preprocess.DEFAULT_PERCENTILES))
    tuned = predict.read_postprocess(os.path.join(run_dir, run_folder.POSTPROCESS), trained.target, best) or {}
    scale = float(plan.planned_value(run_dir, "input_scale", 1.0))
    if test_image:
        raw = tiff.read(test_image)
    elif records:
        raw = records_lib.validation_sample(records_lib.open_records(records_dir), 1)[0][0]  # stretched already: fine
    elif not records_dir:
        missing = "names no records_dir" if metrics else "is missing"
        raise ValueError(f"{run_dir}: its {run_folder.METRICS} {missing}, so the run's records are unknown; give a "
                         "test frame (--test_image)")
    else:
        raise ValueError(f"{run_dir}: its records are gone ({records_dir} holds no dataset.json); give a test "
                         "frame (--test_image)")
    raw = _test_frame(raw, smallest, step)
    with tempfile.TemporaryDirectory(prefix="cellseg-package-") as work:
        network = portable_network(trained)
        keras_path = os.path.join(work, "cellseg_unet.keras")
        network.save(keras_path)
        _saved_model(network, os.path.join(work, "saved_model"))
        bundle = _zip(os.path.join(work, "saved_model"), os.path.join(work, "tf_saved_model_bundle.zip"))
        onnx_path = os.path.join(work, "cellseg_unet.onnx")
        onnx_weights.write(network, onnx_path, INPUT, OUTPUT)
        stretched = stretch_as_packaged(raw, percentiles)
        served = tf.saved_model.load(os.path.join(work, "saved_model"))
        outputs = served.serve(tf.constant(stretched[None, None]))[OUTPUT].numpy()
        np.save(os.path.join(work, "test_input.npy"), raw[None, None])
        np.save(os.path.join(work, "test_output.npy"), outputs.astype(np.float32))
        settings = instances.Postprocess.from_dict(tuned or {"target": row.name})
        labels = instances.labels_from_outputs(np.moveaxis(outputs[0], 0, -1), settings)
        Image.fromarray(predict.overlay(raw, labels)).save(os.path.join(work, "cover.png"))
        name = about.name or f"cellseg {row.name} U-Net ({os.path.basename(os.path.normpath(run_dir))})"
        description = about.description or (
            f"U-Net (Ronneberger et al. 2015) trained with cellseg to segment cells in 2-D microscopy: per-pixel "
            f"{', '.join(row.output_names)} ({row.activation}), which cellseg's post-processing turns into cells.")
        with open(os.path.join(work, "README.md"), "w") as handle:
            handle.write(_documentation(name, description, row, trained.architecture, percentiles, halo, smallest,
                                        step, tuned, records, metrics, scale))
        space = {"size": v0_5.ParameterizedSize(min=smallest, step=step)}
        description_of = v0_5.ModelDescr(
            name=name, description=description, version=about.version, license=about.license,
            authors=[v0_5.Author(name=author) for author in about.authors],
            cite=[v0_5.CiteEntry(text=CITATION[0], doi=CITATION[1])],
            documentation=v0_5.FileDescr(source=os.path.join(work, "README.md")),
            covers=[v0_5.FileDescr(source=os.path.join(work, "cover.png"))],
            tags=["cellseg", "unet", "segmentation", "cells", "2d", "tensorflow", "keras", "onnx"],
            inputs=[v0_5.InputTensorDescr(
                id=v0_5.TensorId(INPUT), description="a raw grey frame",
                axes=[v0_5.BatchAxis(), v0_5.ChannelAxis(channel_names=[v0_5.Identifier("raw")]),
                      v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), **space),
                      v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), **space)],
                test_tensor=v0_5.FileDescr(source=os.path.join(work, "test_input.npy")),
                data=v0_5.IntervalOrRatioDataDescr(type="float32"),
                preprocessing=[
                    v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
                        axes=[v0_5.AxisId("channel"), v0_5.AxisId("y"), v0_5.AxisId("x")],  # each frame's own
                        min_percentile=percentiles[0], max_percentile=percentiles[1])),
                    v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=0.0, max=1.0))])],
            outputs=[v0_5.OutputTensorDescr(
                id=v0_5.TensorId(OUTPUT), description=f"{row.activation} outputs of cellseg's {row.name} target",
                axes=[v0_5.BatchAxis(),
                      v0_5.ChannelAxis(channel_names=[v0_5.Identifier(n) for n in row.output_names]),
                      *(v0_5.SpaceOutputAxisWithHalo(
                          id=v0_5.AxisId(axis), halo=halo,
                          size=v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT), axis_id=v0_5.AxisId(axis)))
                        for axis in "yx")],
                test_tensor=v0_5.FileDescr(source=os.path.join(work, "test_output.npy")),
                data=v0_5.IntervalOrRatioDataDescr(type="float32"))],
            weights=v0_5.WeightsDescr(
                keras_v3=v0_5.KerasV3WeightsDescr(source=keras_path, keras_version=keras.__version__,
                                                  backend=("tensorflow", tf.__version__)),
                tensorflow_saved_model_bundle=v0_5.TensorflowSavedModelBundleWeightsDescr(
                    source=bundle, tensorflow_version=tf.__version__, parent="keras_v3"),
                onnx=v0_5.OnnxWeightsDescr(source=onnx_path, opset_version=onnx_weights.OPSET, parent="keras_v3")),
            config={predict.PACKAGE_CONFIG: {
                "version": cellseg.__version__, "target": row.name, "architecture": dict(trained.architecture),
                "percentiles": list(percentiles), "halo": halo, "postprocess": tuned, "input_scale": scale,
                "weights": os.path.basename(keras_path)}},
        )
        folder = os.path.dirname(os.path.abspath(output))
        os.makedirs(folder, exist_ok=True)
        # Written beside and renamed into place: a failed export leaves no torn package, nor loses an earlier one.
        partial = os.path.join(folder, f".{os.path.basename(output)}.part-{os.getpid()}.zip")
        try:
            save_bioimageio_package(description_of, output_path=partial)
            os.replace(partial, output)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    return load_description(output, perform_io_checks=True).validation_summary.status


def stretch_as_packaged(raw: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """A raw frame as the package's pre-processing gives it to the network: bioimage.io's `scale_range`
    ((x - low) / (high - low + 1e-6), at the frame's percentiles) then `clip` to [0, 1]."""
    low, high = np.percentile(np.asarray(raw, np.float64), percentiles)
    return np.clip((raw - low) / (high - low + 1e-6), 0.0, 1.0).astype(np.float32)


def _documentation(name, description, row, architecture, percentiles, halo, smallest, step, tuned, records,
                   metrics, scale=1.0) -> str:
    counts = records.get("counts", {})
    inputs = ", ".join(os.path.basename(os.path.normpath(p)) for p in records.get("inputs", [])) or "not recorded"
    thresholds = instances.Postprocess.from_dict(tuned).describe() if tuned else "the target's defaults"
    validation = metrics.get("validation", {})
    return f"""# {name}

{description}

## Input

One 2-D grey frame, axes (batch, channel, y, x), raw intensities (8-bit, 16-bit or
float). The pre-processing maps the frame's own {percentiles[0]:g} and {percentiles[1]:g}
percentiles to 0 and 1 and clips to [0, 1], as cellseg stretched its training frames.
Heights and widths are {smallest} + n x {step} pixels; pad smaller frames (mirror).
{_scale_note(scale)}
## Output

{len(row.output_names)} channel(s) per pixel, the input's size: {", ".join(row.output_names)}
({row.activation}). Within {halo} pixels of a tile's border the network sees padding,
not image: tile with that halo.

## From outputs to cells

cellseg (`cellseg-predict --model=this.zip`) turns the outputs into labelled cells
with a seeded watershed ({row.seeds} seeds) and the thresholds tuned on the run's
validation frames: {thresholds}; they are in this package's `config.cellseg.postprocess`.
The thresholds were tuned on outputs averaged over the 8 flips and quarter turns of
each frame (cellseg's test-time augmentation); this network alone is one pass.

## Training data

U-Net, base filters {architecture['base_filters']}, depth {architecture['depth']}, target
`{row.name}`, trained with cellseg {cellseg.__version__} on: {inputs}
({counts.get('train', '?')} training and {counts.get('val', '?')} validation frames,
training foreground fraction {records.get('foreground_fraction', float('nan')):.1%}).

## Validation

The best checkpoint on the validation frames, in inference mode:
{chr(10).join(f"- {k}: {v:.4f}" for k, v in validation.items()) or "- not recorded"}
"""


def _scale_note(scale: float) -> str:
    if scale == 1:
        return ""
    return (f"\nThe network was trained on frames resampled by {scale:g} (bilinear; its cells' size, "
            f"`config.cellseg.input_scale`): resample each frame by {scale:g} before it, and the labels made from "
            "its outputs back to the frame's size. `cellseg-predict --model=this.zip` does so.\n")


def test(package: str) -> tuple[bool, list[str], str]:
    """bioimageio.core's model test of `package` (each weight format on the test input, against the test
    output): (passed, one line per check, the first failed check and its first error, "" when passed).
    bioimageio.core unzips the SavedModel into the working folder."""
    if v0_5 is None:
        raise ValueError(f"testing a package {NEEDS_EXTRA}")
    try:
        summary = test_model(package)
    except Exception as error:  # bioimageio.core raises many kinds for what is not a package
        raise ValueError(f"{package}: not a testable package ({errors.first_line(error)})") from None
    lines, failures = [f"bioimageio.core model test: {summary.status}"], []
    for detail in summary.details:
        lines.append(f"  {detail.status:>7}  {detail.name}")
        messages = [error.msg.splitlines()[0] if error.msg else str(error) for error in detail.errors]
        lines += [f"           error: {message}" for message in messages]
        if detail.status == "failed":
            failures.append(f"{detail.name}: {messages[0]}" if messages else detail.name)
    passed = summary.status == "passed"
    return passed, lines, "" if passed else (failures[0] if failures else summary.status)
