"""The fields of a cellseg TFRecord example, its version and its image levels: the table that
`schema` (TensorFlow) and `record_reader` (no TensorFlow) both build from.

`records/README.md` documents it. Every example carries `SCHEMA_VERSION`; a
reader refuses any other version.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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


class SchemaError(ValueError):
    """A record does not follow this schema."""


def quantize(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint16 levels (the stored form)."""
    return np.round(np.clip(image, 0.0, 1.0) * IMAGE_SCALE).astype(np.uint16)


def dequantize(levels: np.ndarray) -> np.ndarray:
    """Stored uint16 levels back to a float32 image in [0, 1]."""
    return (np.asarray(levels, np.float32) / np.float32(IMAGE_SCALE)).astype(np.float32)


def check_version(version: int, where: str) -> None:
    """Raise SchemaError unless `version` is the one this cellseg reads (host-side check)."""
    if int(version) != SCHEMA_VERSION:
        raise SchemaError(
            f"{where}: schema version {version}, but this cellseg reads version {SCHEMA_VERSION}; "
            "convert the data again with cellseg-convert"
        )
