"""Time-lapses stored as one multi-page TIFF or OME-TIFF stack (T, Y, X), as Fiji and microscopes save them.

`tifffile` reads the stack's series (ImageJ hyperstacks and OME-TIFF included)
and its metadata: the physical pixel size (OME `PhysicalSizeX`, or ImageJ's
resolution in microns) becomes the default pixel size of the measurements.
Frames are read one page at a time, so a long stack never sits in memory
whole. One page saved as a (1, Y, X) stack is a stack of one frame; ImageJ
and OME metadata cannot say so (one frame there is written as a 2-D image is).
A stack is segmented and tracked as a CTC sequence folder would be: its
frames are named t000, t001, ... and the results go to `<stem>_RES/`. For
conversion and the dataset summary, `unpack` writes a stack and the stack of
its masks as a CTC dataset folder.
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np
import tifffile

from cellseg import ctc, tiff

SUFFIXES = (".ome.tif", ".ome.tiff", ".tif", ".tiff")
# Axes tifffile may give a stack's one varying dimension: time, depth, an unnamed sequence, ...
SEQUENCE_AXES = set("TZIQ")
MICRONS = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "\\u00B5m": 1.0, "nm": 1e-3, "mm": 1e3}


def is_stack(path: str) -> bool:
    """Whether `path` is a TIFF file of more than one page (one frame per page, or a 3-D series), or of one
    page saved as a (1, Y, X) stack.

    Only tifffile's own metadata keeps a length-1 time axis: one frame in ImageJ
    or OME metadata is written exactly as a 2-D image is (ImageJ's `images=1`,
    OME's `SizeT="1"`), so it reads as one, not as a stack.
    """
    if not (os.path.isfile(path) and path.lower().endswith(SUFFIXES)):
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return len(tif.pages) > 1 or len(_squeezed(series)) > 2 or _one_frame(series)
    except (tifffile.TiffFileError, OSError, IndexError):
        return False


def stem(path: str) -> str:
    """The stack's name without folder and suffix: movie.ome.tif -> movie."""
    name = os.path.basename(path)
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def _squeezed(series) -> str:
    """The series' axes without its length-1 dimensions."""
    return "".join(axis for axis, size in zip(series.axes, series.shape) if size > 1)


def _one_frame(series) -> bool:
    """Whether the series is (1, Y, X) over a sequence axis: one frame saved as a stack."""
    return len(series.shape) == 3 and series.shape[0] == 1 and series.axes[0] in SEQUENCE_AXES


class Stack:
    """An open (T, Y, X) stack: `len`, `frame(t)`, `shape` (Y, X), `dtype`, `pixel_size` (um or None).

    ValueError in one line for what is not a grey time-lapse: RGB, several
    channels or another fourth dimension, a file tifffile cannot read.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            self._file = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, OSError) as error:
            raise ValueError(f"{path}: unreadable TIFF stack ({str(error).splitlines()[0]})") from None
        try:
            series = self._file.series[0]
            axes, shape = series.axes, tuple(series.shape)
            kept = _squeezed(series)
            if "S" in kept:
                raise ValueError(f"{path}: an RGB stack ({axes} {shape}); expected grey frames (T, Y, X)")
            varying = kept.replace("Y", "").replace("X", "")
            if len(varying) > 1 or varying and varying not in SEQUENCE_AXES or not kept.endswith("YX"):
                what = (f"{dict(zip(axes, shape))['C']} channels" if "C" in varying and len(varying) == 1
                        else f"a {len(kept)}-D stack")
                raise ValueError(f"{path}: {what} ({axes} {shape}); expected one grey channel over time "
                                 "(T, Y, X): save one channel, one position per file")
            self.shape = tuple(size for axis, size in zip(axes, shape) if axis in "YX")
            self.dtype = series.dtype
            self._pages = [page for page in series.pages if page is not None]
            if len(varying) == 0 and len(self._file.pages) > 1:  # pages saved one by one: a series each
                self._pages = list(self._file.pages)
                if any(page.shape != series.shape or page.dtype != series.dtype for page in self._pages):
                    raise ValueError(f"{path}: pages of different sizes or types; expected a (T, Y, X) stack")
            elif len(self._pages) != int(np.prod(shape)) // int(np.prod(self.shape)):
                raise ValueError(f"{path}: pages and series shape {shape} disagree; expected (T, Y, X)")
            self.pixel_size = _pixel_size(self._file)
        except ValueError:
            self._file.close()
            raise

    def __len__(self) -> int:
        return len(self._pages)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as a 2-D array in its stored dtype."""
        try:
            plane = np.asarray(self._pages[index].asarray())
        except (tifffile.TiffFileError, OSError, ValueError) as error:
            raise ValueError(f"{self.path}, frame {index}: unreadable ({str(error).splitlines()[0]})") from None
        return plane.reshape(self.shape)

    def names(self) -> list[str]:
        """The frames' names as a CTC sequence folder would have them: t000, t001, ..."""
        digits = max(3, len(str(len(self) - 1)))
        return [f"t{index:0{digits}d}" for index in range(len(self))]

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pixel_size(tif: tifffile.TiffFile) -> float | None:
    """The pixel width in um from OME metadata, else from the resolution and the unit of ImageJ's metadata
    (or of tifffile's own, as `write` saves one frame); None when absent."""
    if tif.ome_metadata:
        match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if match:
            return float(match.group(1)) * MICRONS.get(unit.group(1) if unit else "µm", 1.0)
    metadata = tif.imagej_metadata or (tif.shaped_metadata[0] if tif.shaped_metadata else None)
    if metadata:
        unit = str(metadata.get("unit", ""))
        resolution = tif.pages[0].tags.get("XResolution")
        if unit in MICRONS and resolution:
            numerator, denominator = resolution.value
            if numerator:
                return denominator / numerator * MICRONS[unit]
    return None


def write(path: str, frames, pixel_size: float | None = None) -> None:
    """Frames (T, Y, X) as an ImageJ stack (pixel size in um when given): for tests and examples.

    One frame is saved with tifffile's own metadata instead, the only kind that
    keeps its length-1 time axis (an ImageJ file of one frame is a 2-D image);
    the pixel size is then stored as ImageJ stores it, resolution and unit.
    """
    frames = np.asarray(frames)
    metadata, extra = {"axes": "TYX"}, {}
    if pixel_size:  # as ImageJ saves it: pixels per unit, the unit in the metadata, no TIFF unit
        metadata["unit"] = "um"
        extra = {"resolution": (1 / pixel_size, 1 / pixel_size), "resolutionunit": "NONE"}
    tifffile.imwrite(path, frames, imagej=len(frames) > 1, metadata=metadata, **extra)


def unpack(images: str, masks: str | None, root: str) -> str:
    """A stack, and the stack of its masks (label images, the truth of each frame), written as the CTC
    dataset folder `root/<stem>` (sequence 01: `01/tTTT.tif`, `01_GT/SEG/man_segTTT.tif`), frame by frame;
    returns that folder. The masks must match the frames in number and size."""
    folder = os.path.join(root, stem(images))
    with contextlib.ExitStack() as opened:
        frames = opened.enter_context(Stack(images))
        truth = opened.enter_context(Stack(masks)) if masks else None
        if truth is not None and (len(truth) != len(frames) or truth.shape != frames.shape):
            raise ValueError(f"{masks}: {len(truth)} masks of {truth.shape[0]} x {truth.shape[1]} for "
                             f"{len(frames)} frames of {frames.shape[0]} x {frames.shape[1]} in {images}")
        digits = max(3, len(str(len(frames) - 1)))
        os.makedirs(os.path.join(folder, "01"), exist_ok=True)
        if truth is not None:
            os.makedirs(os.path.join(folder, "01_GT", "SEG"), exist_ok=True)
        for index in range(len(frames)):
            tiff.write(os.path.join(folder, "01", ctc.frame_name(index, digits)), frames.frame(index))
            if truth is not None:
                labels = truth.frame(index)
                if not np.issubdtype(labels.dtype, np.integer):
                    raise ValueError(f"{masks}: {labels.dtype} masks; expected label images (integers)")
                tiff.write_labels(os.path.join(folder, "01_GT", "SEG", ctc.mask_name(index, digits)), labels)
    return folder
