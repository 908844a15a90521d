"""A quick look at a CTC dataset folder: what it holds and what its cells are like.

Run it on a real archive before converting it, or see what the synthetic
generator made: sequences, frames, frames with gold and silver truth, frame
sizes, bit depth, foreground fraction and cell size.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from cellseg import ctc, tiff


@dataclasses.dataclass(frozen=True)
class Summary:
    dataset: str
    root: str
    frames_per_sequence: dict[str, int]
    gold: int
    silver: int
    sizes: tuple[tuple[int, int], ...]  # distinct (height, width)
    dtypes: tuple[str, ...]
    foreground_fraction: float  # mean over annotated frames (gold, else silver)
    cells_per_frame: float
    median_cell_area: float  # pixels
    orphans: int
    unreadable: tuple[str, ...]  # "path: reason"

    @property
    def frames(self) -> int:
        return sum(self.frames_per_sequence.values())


def summarize(root: str | os.PathLike, progress=None) -> Summary:
    """Summarize the CTC dataset folder `root`; unreadable files are listed, not fatal.

    `progress`, if given, is called with (frames looked at, frames in all).
    """
    layout = ctc.discover(root)
    sizes, dtypes, unreadable = set(), set(), []
    fractions, counts, areas = [], [], []
    for done, frame in enumerate(layout.frames, start=1):
        try:
            height, width, dtype = tiff.header(frame.image)
            sizes.add((height, width))
            dtypes.add(dtype)
        except ValueError as error:
            unreadable.append(str(error))
        mask_path, _ = frame.truth("gold_then_silver")
        if mask_path:
            try:
                labels = tiff.read(mask_path)
            except ValueError as error:
                unreadable.append(str(error))
            else:
                fractions.append(np.count_nonzero(labels) / labels.size)
                ids, sizes_px = np.unique(labels[labels > 0], return_counts=True)
                counts.append(len(ids))
                areas.extend(sizes_px.tolist())
        if progress:
            progress(done, len(layout.frames))
    per_sequence = {}
    for frame in layout.frames:
        per_sequence[frame.sequence] = per_sequence.get(frame.sequence, 0) + 1
    return Summary(
        dataset=os.path.basename(os.path.normpath(layout.root)),
        root=layout.root,
        frames_per_sequence=per_sequence,
        gold=sum(frame.gold is not None for frame in layout.frames),
        silver=sum(frame.silver is not None for frame in layout.frames),
        sizes=tuple(sorted(sizes)),
        dtypes=tuple(sorted(dtypes)),
        foreground_fraction=float(np.mean(fractions)) if fractions else float("nan"),
        cells_per_frame=float(np.mean(counts)) if counts else float("nan"),
        median_cell_area=float(np.median(areas)) if areas else float("nan"),
        orphans=len(layout.orphans),
        unreadable=tuple(unreadable),
    )


def format_summary(summary: Summary) -> str:
    """The summary as an aligned two-column table."""
    bits = {"uint8": "8-bit", "uint16": "16-bit", "float32": "32-bit float"}
    rows = [
        ("dataset", f"{summary.dataset}  ({summary.root})"),
        ("sequences", ", ".join(f"{s} ({n} frames)" for s, n in summary.frames_per_sequence.items())),
        ("frames", str(summary.frames)),
        ("with gold truth", f"{summary.gold}  (01_GT/SEG)"),
        ("with silver truth", f"{summary.silver}  (01_ST/SEG)"),
        ("image size", ", ".join(f"{h} x {w}" for h, w in summary.sizes) or "-"),
        ("bit depth", ", ".join(f"{d} ({bits.get(d, d)})" for d in summary.dtypes) or "-"),
        ("foreground fraction", f"{summary.foreground_fraction:.1%}  (mean; gold, else silver)"),
        ("cells per frame", f"{summary.cells_per_frame:.1f}"),
        ("median cell area", f"{summary.median_cell_area:.0f} px"),
    ]
    if summary.orphans:
        rows.append(("masks without frame", str(summary.orphans)))
    if summary.unreadable:
        rows.append(("unreadable files", f"{len(summary.unreadable)}, first: {summary.unreadable[0]}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
