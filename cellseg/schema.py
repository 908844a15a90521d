"""The one definition of a cellseg TFRecord example: encoded from numpy, decoded in TF.

The converter writes through `encode`, the input pipeline reads through `decode`;
`FIELDS` is the single table both are built from. `records/README.md` documents it.
Every example carries `SCHEMA_VERSION`; a reader refuses any other version.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

SCHEMA_VERSION = 2  # 2: cell and neighbour distance maps

# The stretched image is in [0, 1]; 16 bits keep every level of a 16-bit source
# whose 2..98 % range spans up to 65535 grey values.
IMAGE_SCALE = 65535.0


@dataclasses.dataclass(frozen=True)
class Field:
    """One feature: `kind` is array (raw little-endian bytes of `dtype`), int, float or str."""

    name: str
    kind: str
    dtype: str | None = None
    doc: str = ""
    optional: bool = False


FIELDS = (
    Field("schema_version", "int", doc="version of this table; readers refuse others"),
    Field("image", "array", "<u2", "percentile-stretched image, round(x * 65535), H x W"),
    Field("labels", "array", "<u2", "instance labels, 0 = background, H x W"),
    Field("weights", "array", "<f2", "border weight map (class weights 1), H x W; absent = 1", True),
    Field("cell_distance", "array", "<f2", "distance to the cell's border, 1 at its centre, H x W; absent = 0",
          True),
    Field("neighbour_distance", "array", "<f2", "closeness of the nearest other cell in [0, 1], H x W; absent = 0",
          True),
    Field("height", "int", doc="frame height H in pixels"),
    Field("width", "int", doc="frame width W in pixels"),
    Field("dataset", "str", doc="dataset folder name, e.g. Fluo-N2DH-GOWT1"),
    Field("sequence", "str", doc="sequence name, e.g. 01"),
    Field("frame", "int", doc="frame index t"),
    Field("truth", "str", doc="which annotation the labels are: gold or silver"),
    Field("source_dtype", "str", doc="dtype of the raw TIFF, e.g. uint16"),
    Field("percentile_low", "float", doc="lower stretch percentile, e.g. 2.0"),
    Field("percentile_high", "float", doc="upper stretch percentile, e.g. 98.0"),
    Field("intensity_low", "float", doc="raw intensity at the lower percentile (maps to 0)"),
    Field("intensity_high", "float", doc="raw intensity at the upper percentile (maps to 1)"),
)
_BY_NAME = {field.name: field for field in FIELDS}
_TF_DTYPES = {"<u2": tf.uint16, "<f2": tf.float16, "<f4": tf.float32}


class SchemaError(ValueError):
    """A record does not follow this schema."""


def quantize(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint16 levels (the stored form)."""
    return np.round(np.clip(image, 0.0, 1.0) * IMAGE_SCALE).astype(np.uint16)


def dequantize(levels: np.ndarray) -> np.ndarray:
    """Stored uint16 levels back to a float32 image in [0, 1]."""
    return (np.asarray(levels, np.float32) / np.float32(IMAGE_SCALE)).astype(np.float32)


def encode(
    *,
    image: np.ndarray,
    labels: np.ndarray,
    dataset: str,
    sequence: str,
    frame: int,
    truth: str,
    source_dtype: str,
    percentiles: tuple[float, float],
    intensities: tuple[float, float],
    weights: np.ndarray | None = None,
    distances: tuple[np.ndarray, np.ndarray] | None = None,
) -> bytes:
    """A serialized tf.train.Example of one preprocessed frame.

    `image` is the stretched float image in [0, 1]; `labels` the instance labels;
    `weights` the optional border weight map, `distances` the optional (cell,
    neighbour) distance maps of `cellseg.targets`, all of the same H x W shape.
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 2 or labels.shape != image.shape:
        raise SchemaError(f"image {image.shape} and labels {labels.shape} must be equal 2-D shapes")
    cell, neighbour = distances if distances is not None else (None, None)
    for name, value in (("weights", weights), ("cell_distance", cell), ("neighbour_distance", neighbour)):
        if value is not None and np.shape(value) != image.shape:
            raise SchemaError(f"{name} {np.shape(value)} must have the image's shape {image.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        raise SchemaError("labels must lie in 0..65535 to be stored as uint16")
    values = {
        "schema_version": SCHEMA_VERSION,
        "image": quantize(image),
        "labels": labels,
        "weights": weights,
        "cell_distance": cell,
        "neighbour_distance": neighbour,
        "height": image.shape[0],
        "width": image.shape[1],
        "dataset": dataset,
        "sequence": sequence,
        "frame": frame,
        "truth": truth,
        "source_dtype": source_dtype,
        "percentile_low": percentiles[0],
        "percentile_high": percentiles[1],
        "intensity_low": intensities[0],
        "intensity_high": intensities[1],
    }
    feature = {}
    for field in FIELDS:
        value = values[field.name]
        if value is None and field.optional:
            continue
        feature[field.name] = _to_feature(field, value)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _to_feature(field: Field, value) -> tf.train.Feature:
    if field.kind == "array":
        raw = np.ascontiguousarray(value, dtype=np.dtype(field.dtype)).tobytes()
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
    if field.kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    if field.kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(value).encode()]))


def feature_spec() -> dict[str, tf.io.FixedLenFeature]:
    """The parsing spec of `FIELDS` for tf.io.parse_single_example."""
    kinds = {"array": (tf.string, b""), "str": (tf.string, b""), "int": (tf.int64, -1), "float": (tf.float32, 0.0)}
    spec = {}
    for field in FIELDS:
        dtype, default = kinds[field.kind]
        spec[field.name] = tf.io.FixedLenFeature([], dtype, default_value=default if field.optional else None)
    return spec


def decode(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one serialized example into tensors; usable inside tf.data.map.

    Returns `image` (float32, H x W x 1, [0, 1]), `labels` (int32, H x W x 1),
    `weights` (float32, H x W x 1; ones where the record has none),
    `cell_distance` and `neighbour_distance` (float32, H x W x 1; zeros where the
    record has none) and the scalar metadata fields. Raises InvalidArgumentError for another schema version.
    """
    # The version is parsed and checked alone first, so that a record of another
    # version is refused by this message rather than by a missing-feature error.
    version = tf.io.parse_single_example(
        serialized, {"schema_version": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    )["schema_version"]
    check = tf.debugging.assert_equal(
        version,
        tf.constant(SCHEMA_VERSION, tf.int64),
        message=(
            f"cellseg record has an unknown schema version (-1: none); this cellseg reads "
            f"version {SCHEMA_VERSION}: convert the data again with cellseg-convert"
        ),
    )
    with tf.control_dependencies([check]):
        serialized = tf.identity(serialized)
    parsed = tf.io.parse_single_example(serialized, feature_spec())
    shape = tf.stack([parsed["height"], parsed["width"], 1])
    out = {}
    for field in FIELDS:
        value = parsed[field.name]
        if field.kind == "array":
            value = _decode_array(field, value, shape)
        out[field.name] = value
    out["image"] = tf.cast(out["image"], tf.float32) / IMAGE_SCALE
    out["labels"] = tf.cast(out["labels"], tf.int32)
    for name in ("weights", "cell_distance", "neighbour_distance"):
        out[name] = tf.cast(out[name], tf.float32)
    return out


def _decode_array(field: Field, raw: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
    dtype = _TF_DTYPES[field.dtype]

    def present():
        return tf.reshape(tf.io.decode_raw(raw, dtype, little_endian=True), shape)

    if not field.optional:
        return present()
    absent = tf.ones if field.name == "weights" else tf.zeros
    return tf.cond(tf.strings.length(raw) > 0, present, lambda: absent(shape, dtype))


def check_version(version: int, where: str) -> None:
    """Raise SchemaError unless `version` is the one this cellseg reads (host-side check)."""
    if int(version) != SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: schema version {version}, but this cellseg reads version {SCHEMA_VERSION}; "
            "convert the data again with cellseg-convert"
        )
