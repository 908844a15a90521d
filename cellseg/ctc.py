"""The Cell Tracking Challenge (CTC) folder layout.

A CTC dataset folder holds one folder per sequence and, beside it, the
annotations of that sequence::

    <dataset>/01/t000.tif                 frames (t0000.tif for long sequences)
    <dataset>/01_GT/SEG/man_seg000.tif    gold truth: manual masks, some frames
    <dataset>/01_ST/SEG/man_seg000.tif    silver truth: computed masks, most frames
    <dataset>/01_RES/mask000.tif          results, as the challenge expects them

Discovery works on relative paths, so the same parser serves the local disk and
any other filesystem (Beam lists `gs://...` itself and hands the names here).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Iterable

GOLD = "gold"
SILVER = "silver"
TRUTH_POLICIES = ("gold", "silver", "gold_then_silver")

_SEQUENCE = re.compile(r"^(\d{2,})$")
FRAME = re.compile(r"^t(\d{3,})\.tiff?$")  # t000.tif, t0000.tif
_MASK = re.compile(r"^man_seg(\d{3,})\.tiff?$")
# man_segTTT.tif (truth, SEG), man_trackTTT.tif (truth, TRA), maskTTT.tif (results)
NUMBERED_MASK = re.compile(r"^(?:man_seg|man_track|mask)(\d{3,})\.tiff?$")
_TRUTH_DIR = {"GT": GOLD, "ST": SILVER}

EXPECTED_LAYOUT = (
    "expected sequence folders such as 01/ holding frames t000.tif (or t0000.tif), "
    "with masks in 01_GT/SEG/man_seg000.tif (gold) or 01_ST/SEG/man_seg000.tif (silver)"
)


class LayoutError(ValueError):
    """A folder is not in CTC layout."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One frame of a CTC sequence and the masks annotating it (None when absent)."""

    dataset: str
    sequence: str
    index: int
    image: str
    gold: str | None = None
    silver: str | None = None

    @property
    def key(self) -> str:
        """A name unique across datasets: `dataset/sequence/tNNNN`."""
        return f"{self.dataset}/{self.sequence}/t{self.index:04d}"

    def truth(self, policy: str = "gold_then_silver") -> tuple[str | None, str | None]:
        """The mask path and its kind (`gold` or `silver`) under `policy`; (None, None) if none."""
        if policy not in TRUTH_POLICIES:
            raise ValueError(f"unknown truth policy {policy!r}; expected one of {TRUTH_POLICIES}")
        if policy in ("gold", "gold_then_silver") and self.gold:
            return self.gold, GOLD
        if policy in ("silver", "gold_then_silver") and self.silver:
            return self.silver, SILVER
        return None, None


@dataclasses.dataclass(frozen=True)
class Orphan:
    """A mask whose frame does not exist."""

    path: str
    reason: str


def parse_layout(
    root: str, relative_paths: Iterable[str], sequences: Iterable[str] | None = None
) -> tuple[list[Frame], list[Orphan]]:
    """Frames (sorted by sequence, index) and orphan masks from paths relative to `root`.

    Files that are not part of the layout (TRA folders, notes, results) are ignored.
    Raises LayoutError when no frame is found.
    """
    root = root.rstrip("/") or "/"
    dataset = os.path.basename(root.rstrip("/")) or root
    wanted = None if sequences is None else {str(s) for s in sequences}
    images: dict[tuple[str, int], str] = {}
    masks: dict[tuple[str, int, str], str] = {}
    for relative in relative_paths:
        parts = relative.replace("\\", "/").strip("/").split("/")
        if len(parts) == 2 and _SEQUENCE.match(parts[0]) and FRAME.match(parts[1]):
            index = int(FRAME.match(parts[1]).group(1))
            images[(parts[0], index)] = _join(root, parts)
        elif len(parts) == 3 and parts[1] == "SEG" and _MASK.match(parts[2]):
            sequence, _, suffix = parts[0].partition("_")
            if _SEQUENCE.match(sequence) and suffix in _TRUTH_DIR:
                index = int(_MASK.match(parts[2]).group(1))
                masks[(sequence, index, _TRUTH_DIR[suffix])] = _join(root, parts)
    if wanted is not None:
        images = {k: v for k, v in images.items() if k[0] in wanted}
        masks = {k: v for k, v in masks.items() if k[0] in wanted}
        missing = wanted - {sequence for sequence, _ in images}
        if missing and images:
            raise LayoutError(f"{root}: no frames for sequence(s) {', '.join(sorted(missing))}")
    if not images:
        what = f" for sequence(s) {', '.join(sorted(wanted))}" if wanted else ""
        raise LayoutError(f"not a CTC dataset folder: {root}: no frames found{what}; {EXPECTED_LAYOUT}")
    frames = [
        Frame(
            dataset=dataset,
            sequence=sequence,
            index=index,
            image=path,
            gold=masks.get((sequence, index, GOLD)),
            silver=masks.get((sequence, index, SILVER)),
        )
        for (sequence, index), path in sorted(images.items())
    ]
    orphans = [
        Orphan(path, f"{kind} mask without frame {sequence}/t{index:03d}.tif")
        for (sequence, index, kind), path in sorted(masks.items())
        if (sequence, index) not in images
    ]
    return frames, orphans


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a CTC dataset folder holds: its frames and any masks that have no frame."""

    root: str
    frames: list[Frame]
    orphans: list[Orphan]

    @property
    def sequences(self) -> list[str]:
        return sorted({frame.sequence for frame in self.frames})


def discover(root: str | os.PathLike, sequences: Iterable[str] | None = None) -> Layout:
    """The frames of the CTC dataset folder `root` on the local disk.

    Raises LayoutError naming the folder and the expected layout when `root` is
    missing or holds no CTC frames.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise LayoutError(f"not a CTC dataset folder: {root}: no such directory; {EXPECTED_LAYOUT}")
    frames, orphans = parse_layout(root, list_files(root), sequences)
    return Layout(root, frames, orphans)


def list_files(root: str) -> list[str]:
    """Paths relative to `root` of the files two levels down, where CTC keeps them."""
    found = []
    for top in sorted(os.listdir(root)):
        top_path = os.path.join(root, top)
        if not os.path.isdir(top_path):
            continue
        for entry in sorted(os.listdir(top_path)):
            entry_path = os.path.join(top_path, entry)
            if os.path.isdir(entry_path):
                found.extend(f"{top}/{entry}/{name}" for name in sorted(os.listdir(entry_path)))
            else:
                found.append(f"{top}/{entry}")
    return found


def result_path(root: str | os.PathLike, sequence: str, index: int, digits: int = 3) -> str:
    """Where the challenge expects the segmentation of a frame: `<root>/<seq>_RES/maskTTT.tif`."""
    return os.path.join(os.fspath(root), f"{sequence}_RES", result_name(index, digits))


def result_name(index: int, digits: int = 3) -> str:
    return f"mask{index:0{digits}d}.tif"


def frame_name(index: int, digits: int = 3) -> str:
    return f"t{index:0{digits}d}.tif"


def mask_name(index: int, digits: int = 3) -> str:
    return f"man_seg{index:0{digits}d}.tif"


def _join(root: str, parts: list[str]) -> str:
    return "/".join([root.rstrip("/"), *parts]) if "://" in root else os.path.join(root, *parts)


def sequence_frames(folder: str) -> list[str]:
    """The frames t000.tif (or t0000.tif) of one sequence folder, in order."""
    return sorted(path for path in glob.glob(os.path.join(folder, "t*.tif*")) if FRAME.match(os.path.basename(path)))


def frame_path(folder: str, index: int) -> str | None:
    """The path of frame `index` in a sequence folder (three or four digits), None when absent."""
    for digits in (3, 4):
        path = os.path.join(folder, frame_name(index, digits))
        if os.path.exists(path):
            return path
    return None


def frame_index(name: str) -> tuple[int, int] | None:
    """(index, digits) of a frame file name such as t012.tif (or its stem t012), None for other names."""
    match = FRAME.match(name if name.endswith((".tif", ".tiff")) else name + ".tif")
    return (int(match.group(1)), len(match.group(1))) if match else None


def masks_by_index(folder: str) -> dict[int, str]:
    """Frame index -> path of the man_segTTT.tif, man_trackTTT.tif (truth) or maskTTT.tif (results) files of a
    folder (a CTC folder holds one kind)."""
    found = {}
    for path in glob.glob(os.path.join(folder, "*.tif*")):
        match = NUMBERED_MASK.match(os.path.basename(path))
        if match:
            found[int(match.group(1))] = path
    return found


TRACKS = "res_track.txt"  # a result folder's lineage; the truth's is TRA/man_track.txt


def write_tracks(path: str | os.PathLike, rows: Iterable[tuple[int, int, int, int]]) -> None:
    """The challenge's track file: one `L B E P` line (label, first frame, last frame, parent) per track."""
    with open(path, "w") as handle:
        handle.writelines(f"{label} {first} {last} {parent}\n" for label, first, last, parent in rows)


def read_tracks(path: str | os.PathLike, last_frame: int | None = None) -> list[tuple[int, int, int, int]]:
    """The rows of a track file (`write_tracks`), checked as the challenge defines them, so that no scorer
    meets a broken one: ValueError naming the file (and the line) when it cannot be read, a line is not
    `L B E P` (four non-negative integers, one kind of separator, as py-ctcmetrics splits them), a label is 0
    or listed twice, a track ends before it begins or after `last_frame`, or a parent is not a track of the
    file that ends before its child begins. An empty file is no tracks (masks without a cell)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; expected 'label first last parent' lines") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror or error})") from None
    separator = " " if lines and " " in lines[0] else "\t"
    rows, line_of = [], {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        where = f"{path}:{number}"
        if len(fields) != 4 or not all(f.isascii() and f.isdigit() for f in fields):
            raise ValueError(f"{where}: expected four non-negative integers 'label first last parent', "
                             f"got {line.strip()[:40]!r}")
        if ("\t" if separator == " " else " ") in line.strip():
            raise ValueError(f"{where}: mixes tabs and spaces; separate the fields as on line 1")
        label, first, last, parent = (int(f) for f in fields)
        if label == 0:
            raise ValueError(f"{where}: label 0 is the background, not a track")
        if label in line_of:
            raise ValueError(f"{where}: track {label} is listed twice (also on line {line_of[label]})")
        if last < first:
            raise ValueError(f"{where}: track {label} ends (frame {last}) before it begins (frame {first})")
        if last_frame is not None and last > last_frame:
            raise ValueError(f"{where}: track {label} runs to frame {last}, past the last frame ({last_frame})")
        line_of[label] = number
        rows.append((label, first, last, parent))
    ends = {label: last for label, _, last, _ in rows}
    for label, first, _, parent in rows:
        where = f"{path}:{line_of[label]}"
        if parent == label:
            raise ValueError(f"{where}: track {label} is its own parent")
        if parent and parent not in ends:
            raise ValueError(f"{where}: track {label}'s parent {parent} is not a track in this file")
        if parent and ends[parent] >= first:
            raise ValueError(f"{where}: track {label} begins (frame {first}) before its parent {parent} ends "
                             f"(frame {ends[parent]})")
    return rows
