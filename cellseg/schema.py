"""The one definition of a cellseg TFRecord example: encoded from numpy, decoded in TF.

The converter writes through `encode`, the input pipeline reads through `decode`;
`FIELDS`, the single table both are built from, is defined in `cellseg.record_fields`
(without TensorFlow, for `cellseg.record_reader`) and named here too.
`records/README.md` documents it. Every example carries `SCHEMA_VERSION`; a
reader refuses any other version.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cellseg.record_fields import (  # noqa: F401 (schema's names, defined there without TensorFlow)
    FIELDS,
    IMAGE_SCALE,
    SCHEMA_VERSION,
    Field,
    SchemaError,
    check_version,
    dequantize,
    quantize,
)

_BY_NAME = {field.name: field for field in FIELDS}
_TF_DTYPES = {"<u2": tf.uint16, "<f2": tf.float16, "<f4": tf.float32}


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
