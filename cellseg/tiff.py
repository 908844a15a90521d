"""Reading 2-D TIFF frames of any bit depth with rasterio, and writing label TIFFs.

Frames are read from a path or from bytes, so that a Beam worker can fetch a file
from any filesystem and decode it here. The dtype is kept as stored (uint8,
uint16, float32, ...): the 16-bit range of fluorescence data is never squeezed.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile

from cellseg import errors, preprocess

# Microscopy TIFFs carry no map coordinates; rasterio warns about that on every
# file. That warning class alone is silenced, process-wide: a catch_warnings()
# block per read would not be thread-safe, and the converter reads in threads.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


def read(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """The single 2-D plane of a TIFF file, in its stored dtype.

    `source` is a path or the file's bytes; `name` names it in errors (defaults to
    the path). A file that is not a TIFF, is truncated, or holds several pages or
    bands raises ValueError naming the file.
    """
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    name = name or ("<bytes>" if is_bytes else os.fspath(source))
    try:
        if is_bytes:
            if bytes(source[:4]) not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                raise ValueError(f"{name}: not a TIFF file")
            with MemoryFile(bytes(source)) as memory, memory.open() as dataset:
                return _read_plane(dataset, name)
        with rasterio.open(source) as dataset:
            return _read_plane(dataset, name)
    except ValueError:
        raise
    except (RasterioError, OSError) as error:
        raise ValueError(f"{name}: unreadable TIFF ({errors.first_line(error)})") from error


def _read_plane(dataset, name: str) -> np.ndarray:
    if dataset.driver != "GTiff":
        raise ValueError(f"{name}: not a TIFF file (format {dataset.driver})")
    if dataset.count != 1:
        raise ValueError(f"{name}: {dataset.count} bands; expected a single 2-D plane")
    pages = len(dataset.subdatasets)  # GDAL lists every page of a multi-page file, none of a single one
    if pages > 1:
        raise ValueError(f"{name}: {pages} pages (a stack); expected a single 2-D plane")
    return dataset.read(1)


def write(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a 2-D array as an uncompressed single-plane TIFF, keeping its dtype.

    GDAL encodes the file in memory and Python writes it: libtiff, writing to disk
    through GDAL, prints a full disk's error and may return with the file cut short.
    OSError naming `path` when the file cannot be written whole (ENOSPC for a full
    disk); no partial file is left.
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{os.fspath(path)}: expected a 2-D array, got shape {array.shape}")
    profile = dict(
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=array.dtype.name,
        photometric="MINISBLACK",
    )
    with MemoryFile(ext=".tif") as memory:
        with memory.open(**profile) as dataset:
            dataset.write(array, 1)
        file = open(path, "wb")  # an error here names the path already
        try:
            with file:
                file.write(memory.getbuffer())
        except OSError as error:  # a full disk or a quota: the file is cut short
            with contextlib.suppress(OSError):
                os.remove(path)
            raise OSError(error.errno, error.strerror or errors.first_line(error), os.fspath(path)) from None


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write instance labels as a uint16 TIFF (the CTC mask format)."""
    labels = np.asarray(labels)
    if not preprocess.labels_fit(labels):
        raise ValueError(f"{os.fspath(path)}: labels outside 0..65535 do not fit a uint16 mask")
    write(path, labels.astype(np.uint16))


def header(path: str | os.PathLike) -> tuple[int, int, str]:
    """(height, width, dtype name) of a TIFF, read from its header alone."""
    name = os.fspath(path)
    try:
        with rasterio.open(path) as dataset:
            if dataset.driver != "GTiff":
                raise ValueError(f"{name}: not a TIFF file (format {dataset.driver})")
            return dataset.height, dataset.width, dataset.dtypes[0]
    except (RasterioError, OSError) as error:
        raise ValueError(f"{name}: unreadable TIFF ({errors.first_line(error)})") from error
