"""Tracks from the instance labels of a time-lapse (numpy and scipy, no TensorFlow).

Frame by frame (`Tracker.add`, so a sequence of any length streams through), the
open tracks (the cells of the frame before, and those missing for up to
`Config.max_gap` frames) are linked to the new frame's objects by `linking.link`
(the cues, the motion model, divisions and the assignment are explained there); then:

- an object that holds most of two cells of the frame before (moved by the
  field; each of a cell's size, seen for two frames or born of a division) and is
  not convex is cut between them (`split_merged`): touching cells that the
  segmentation merged in one frame keep their tracks;
- gap closing: a track missing for up to `max_gap` frames (or a frame absent
  from the sequence) stays open. The challenge's format allows no frame without
  its label inside a track, so the part after a gap gets a new label whose parent
  is the part before (a parent with one child is a gap, with two a division);
  `Tracker.lineages` tells which labels are one cell.

`track_folder` tracks a folder of label images or a stack, each frame checked as it is read, and writes
the relabelled masks, res_track.txt and tracks.csv (`Recorder`), staged.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import glob
import os
import re
import shutil

import numpy as np
from scipy import ndimage
from skimage import measure as skimage_measure
from skimage import morphology, segmentation

from cellseg import ctc, linking, motility, preprocess, stacks, staging, tiff, track_pictures

TRACKS_TABLE = "tracks.csv"


@dataclasses.dataclass(frozen=True)
class Config:
    max_gap: int = 1  # frames a cell may be missing and still be linked
    drift: bool = True  # look for a global shift between frames (stage drift) as the first guess of motion
    split_merged: bool = True  # cut an object that holds two or more cells of the frame before between them
    divisions: bool = True  # division hypotheses (else continuations, births and ends only)

    def __post_init__(self):
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")


@dataclasses.dataclass
class Track:
    """One track in the challenge's sense: a label present in frames first..last, and its parent (0: none)."""

    label: int
    first: int
    last: int
    parent: int = 0
    gap_child: int = 0  # the label continuing this cell after a gap



class Tracker:
    """Links frames given one by one (`add`); `tracks` and `lineages` once all are in."""

    def __init__(self, config: Config = Config()):
        self.config = config
        self.tracks: dict[int, Track] = {}
        self.frame = -1
        self.next_label = 1
        self.divided: set[int] = set()
        self.cell: dict[int, int] = {}  # label -> the first label of its cell (gaps bridged)
        # The tracks that may continue (their objects labelled by track) and the frame each was last seen in.
        self.open = linking.measure(np.zeros((1, 1), np.int64))
        self.open_frame = np.zeros(0, np.int64)
        self.open_lag = np.zeros((0, 2))  # what the prediction missed of each one's last step, per frame
        self.last_image: np.ndarray | None = None
        self.seen = self.open  # the objects of the last frame added, labelled by track

    def _new(self, parent: int = 0, gap: bool = False) -> int:
        label = self.next_label
        self.next_label += 1
        self.tracks[label] = Track(label, self.frame, self.frame, parent)
        self.cell[label] = self.cell[parent] if gap else label
        if gap:
            self.tracks[parent].gap_child = label
        return label

    def add(self, labels: np.ndarray, frame: int | None = None) -> np.ndarray:
        """The frame's instance labels relabelled by track (uint16), linked to the frames added before.
        `frame` is its number (default: the next one); numbers skipped are missing frames, bridged as gaps."""
        labels = np.asarray(labels)
        frame = self.frame + 1 if frame is None else int(frame)
        if labels.ndim != 2:
            raise ValueError(f"tracking needs 2-D label images, got shape {labels.shape}")
        if self.last_image is not None and labels.shape != self.last_image.shape:
            raise ValueError(f"frame {frame} is {labels.shape}, the one before {self.last_image.shape}")
        if frame <= self.frame:
            raise ValueError(f"frame {frame} comes after frame {self.frame}")
        previous, self.frame = self.frame, frame
        after = linking.measure(labels)
        compact = np.zeros(labels.shape, np.int64)  # labels 1..n, however the input numbered its objects
        compact[after.pixels[:, 0], after.pixels[:, 1]] = after.owner + 1
        waiting = np.flatnonzero(frame - self.open_frame - 1 <= self.config.max_gap)
        before, gaps = self.open.take(waiting), frame - self.open_frame[waiting]
        track_of = np.zeros(len(after), np.int64)
        lag = np.zeros((len(after), 2))
        consumed = np.zeros(len(before), bool)
        if len(before) and len(after):
            links = linking.link(before, gaps, self._guesses(labels, len(waiting)), after, compact - 1,
                                 self.config.divisions, self.open_lag[waiting])
            # Cells of the frame before that are trusted to cut an object holding two of them.
            last = np.flatnonzero((gaps == frame - previous) & np.isin(before.labels, self._settled(previous)))
            if self.config.split_merged and holds_two(before.take(last), links.moves[last], compact - 1, len(after)):
                cut = split_merged(self._moved(before.take(last), links.moves[last]), compact, before.labels[last])
                if cut.max() > compact.max():
                    compact, after = cut, linking.measure(cut)
                    track_of, lag = np.zeros(len(after), np.int64), np.zeros((len(after), 2))
                    links = linking.link(before, gaps, [links.moves], after, compact - 1, self.config.divisions,
                                         self.open_lag[waiting])
            self._apply(links, before, gaps, track_of, consumed)
            rows, cols = links.continuations.T  # a daughter starts with no lag
            lag[cols] = (after.centroid[cols] - before.centroid[rows] - links.moves[rows]) / gaps[rows, None]
        for col in np.flatnonzero(track_of == 0):
            track_of[col] = self._new()
        relabelled = np.concatenate([[0], track_of])[compact]
        if not preprocess.labels_fit(relabelled):
            raise ValueError(f"{relabelled.max()} tracks do not fit uint16 labels")
        self.seen = dataclasses.replace(after, labels=track_of)
        # Still open: this frame's objects, and the cells not found here that may yet be after a gap.
        kept = waiting[~consumed]
        kept = kept[frame + 1 - self.open_frame[kept] - 1 <= self.config.max_gap]
        self.open = linking.concatenate([self.seen, self.open.take(kept)])
        self.open_frame = np.concatenate([np.full(len(after), frame), self.open_frame[kept]])
        self.open_lag = np.concatenate([lag, self.open_lag[kept]])
        self.last_image = relabelled.astype(np.uint16)
        return self.last_image

    def _guesses(self, labels: np.ndarray, count: int) -> list[np.ndarray]:
        """First guesses of the displacement of each of `count` waiting cells: none, and a global shift when
        the whole field seems to have jumped (stage drift; an expanding colony can seem to). (A cell's own
        last step is a worse guess: it carries a jump of the frame before into this one.)"""
        guesses = [np.zeros((count, 2))]
        shift = linking.drift(self.last_image, labels) if self.config.drift and self.last_image is not None else (0, 0)
        if shift != (0, 0):
            guesses.append(np.tile(np.asarray(shift, np.float64), (count, 1)))
        return guesses

    def _settled(self, previous: int) -> list[int]:
        """Tracks of the frame before seen for two frames or born of a division: trusted to cut an object
        (cells seen for one frame only and born of no division may be fragments of one cell)."""
        return [t.label for t in self.tracks.values() if t.last == previous and (t.first < t.last or t.parent)]

    def _moved(self, cells: linking.Objects, moves: np.ndarray) -> np.ndarray:
        """`cells`, each moved by its predicted displacement, as a label image (their track labels)."""
        image = np.zeros(self.last_image.shape, np.int64)
        height, width = image.shape
        pixels = cells.pixels + np.rint(moves).astype(np.int64)[cells.owner]
        inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < height) & (pixels[:, 1] >= 0) & (pixels[:, 1] < width)
        image[pixels[inside, 0], pixels[inside, 1]] = cells.labels[cells.owner[inside]]
        return image

    def _apply(self, links: linking.Links, before: linking.Objects, gaps: np.ndarray, track_of: np.ndarray,
               consumed: np.ndarray) -> None:
        """Continue, bridge and divide tracks as `links` says: fill `track_of` (object -> track label) and
        `consumed` (cells linked)."""
        for row, col in links.continuations.tolist():
            label = int(before.labels[row])
            if gaps[row] == 1:
                self.tracks[label].last = self.frame
                track_of[col] = label
            else:
                track_of[col] = self._new(parent=label, gap=True)
            consumed[row] = True
        for row, *daughters in links.divisions.tolist():
            label = int(before.labels[row])
            self.divided.add(label)
            for col in daughters:
                track_of[col] = self._new(parent=label)
            consumed[row] = True

    def rows(self) -> list[tuple[int, int, int, int]]:
        """The challenge's res_track.txt rows: (label, first frame, last frame, parent)."""
        return [(t.label, t.first, t.last, t.parent) for t in sorted(self.tracks.values(), key=lambda t: t.label)]

    def lineages(self) -> dict[int, int]:
        """label -> the label of the cell it continues after gaps (itself when it starts a cell)."""
        return dict(self.cell)


MERGED_SHARE = 0.5  # of a cell's area that must lie in one object for that object to hold it


def holds_two(cells: linking.Objects, moves: np.ndarray, index_image: np.ndarray, count: int) -> bool:
    """Whether one of the `count` objects of `index_image` holds most of two of `cells` moved by `moves`
    (`split_merged` has something to look at)."""
    rows, cols, shared = linking.moved_overlaps(cells, moves, index_image, count)
    held = shared >= MERGED_SHARE * cells.area[rows]
    return bool(np.bincount(cols[held], minlength=1).max() >= 2)


FRAGMENT = 0.5  # of the typical (median) cell area of the frame before: a smaller piece may be part of a cell
# Area over convex hull area: two round cells side by side (a waist between them) stay below it, one
# round or elongated cell is above it; a cell drawn in two pieces before and whole now is not cut.
MERGED_SOLIDITY = 0.9


def split_merged(previous: np.ndarray, labels: np.ndarray, cells) -> np.ndarray:
    """`labels` with each object that holds most (`MERGED_SHARE`) of two or more of `cells`, labels of
    `previous` (the frame before, moved onto this one), and is not convex (solidity under
    `MERGED_SOLIDITY`), cut between them: a watershed of the object's distance map from the parts of it
    that each cell covers. New pieces take labels above the frame's largest."""
    labels = np.asarray(labels)
    shared = linking.overlaps(previous, labels)
    whole = shared.sum(axis=1)  # each cell's area
    shared[:, 0] = 0  # a cell's pixels on background hold it nowhere
    cells = np.asarray(cells, np.int64)
    cells = cells[(cells < len(whole))]
    cells = cells[whole[cells] > 0]
    if not len(cells):
        return labels
    holder = np.argmax(shared[cells], axis=1)
    held = shared[cells, holder] >= MERGED_SHARE * whole[cells]
    by_object: dict[int, list[int]] = {}
    for cell, obj in zip(cells[held].tolist(), holder[held].tolist()):
        by_object.setdefault(obj, []).append(cell)
    # Two cells in one object: each of them of a cell's size. Pieces much smaller than the frame's typical
    # cell are one cell cut in pieces there, which the object now rightly holds together.
    typical = np.median(whole[cells])
    by_object = {obj: [cell for cell in found if whole[cell] >= FRAGMENT * typical]
                 for obj, found in by_object.items()}
    merged = {obj: found for obj, found in by_object.items() if len(found) > 1}
    if not merged:
        return labels
    out = labels.astype(np.int64)
    next_label = int(out.max()) + 1
    boxes = ndimage.find_objects(out)
    for obj, found in merged.items():
        box = boxes[obj - 1]
        inside = out[box] == obj
        if inside.sum() >= MERGED_SOLIDITY * morphology.convex_hull_image(inside).sum():
            continue
        markers = np.zeros(inside.shape, np.int32)
        for i, cell in enumerate(found, start=1):
            markers[(previous[box] == cell) & inside] = i
        pieces = segmentation.watershed(-ndimage.distance_transform_edt(inside), markers, mask=inside)
        for i in range(2, len(found) + 1):
            out[box][pieces == i] = next_label
            next_label += 1
    return out


class Recorder:
    """A tracker that also keeps each object's centroid and area, and writes the results of a sequence:
    the challenge's `res_track.txt` and `tracks.csv` (`motility.tracks_table`)."""

    def __init__(self, config: Config = Config()):
        self.tracker = Tracker(config)
        self.observations: list[tuple[int, int, float, float, int]] = []

    def add(self, labels: np.ndarray, frame: int | None = None) -> np.ndarray:
        """`Tracker.add`, keeping (frame, track, centroid row, centroid column, area) of each object."""
        relabelled = self.tracker.add(labels, frame)
        seen = self.tracker.seen
        self.observations += [(self.tracker.frame, int(label), float(y), float(x), int(area)) for label, (y, x), area
                              in zip(seen.labels.tolist(), seen.centroid.tolist(), seen.area.tolist())]
        return relabelled

    def cell_parents(self) -> dict[int, int]:
        """cell -> its parent cell (0: none); a cell bridged over gaps is one cell."""
        cell_of, tracks = self.tracker.lineages(), self.tracker.tracks
        parents = {cell: 0 for cell in set(cell_of.values())}
        for track in tracks.values():
            if track.parent and tracks[track.parent].gap_child != track.label:
                parents[cell_of[track.label]] = cell_of[track.parent]
        return parents

    def draw(self, folder: str, last_frame: np.ndarray, pixel_size: float | None = None,
             frame_interval: float | None = None) -> None:
        """trajectories.png (the paths over `last_frame`, uint8 grey; a scale bar with `pixel_size`) and
        lineage.png (time in frames, or minutes with `frame_interval`) into `folder`."""
        cell_of, parents = self.tracker.lineages(), self.cell_parents()
        paths, spans = {}, {}
        for frame, label, y, x, _ in sorted(self.observations):
            cell = cell_of[label]
            paths.setdefault(cell, []).append((y, x))
            first, _ = spans.get(cell, (frame, frame))
            spans[cell] = (first, frame)
        os.makedirs(folder, exist_ok=True)
        track_pictures.save_trajectories(os.path.join(folder, "trajectories.png"), last_frame, paths, parents,
                                         pixel_size)
        track_pictures.save_lineage_tree(os.path.join(folder, "lineage.png"), spans, parents,
                                         {cell_of[label] for label in self.tracker.divided}, frame_interval)

    def write(self, folder: str, table: str, pixel_size: float | None = None,
              frame_interval: float | None = None) -> list[dict]:
        """res_track.txt into `folder`, the per-track table to `table`; returns the table's rows."""
        rows = self.tracker.rows()
        ctc.write_tracks(os.path.join(folder, ctc.TRACKS), rows)
        table_rows = motility.tracks_table(self.observations, self.tracker.lineages(), self.cell_parents(),
                                           self.tracker.divided, pixel_size, frame_interval)
        with open(table, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=motility.columns(pixel_size, frame_interval))
            writer.writeheader()
            writer.writerows(table_rows)
        return table_rows


# --- reading a sequence of label images --------------------------------------------------------------

# Of the labelled pixels, the share that must touch a pixel of the same value before a frame is taken as
# labels without counting its pieces (a label image: nearly all; an intensity image: a few to a half).
COHERENT = 0.9
SCATTERED = 0.5  # under this share of labelled pixels with a same-valued neighbour: not instance labels
PIECES_PER_LABEL = 4  # more separate pieces per label value than this: not instance labels


def check_labels(labels: np.ndarray, where: str) -> None:
    """ValueError naming `where` in one line unless `labels` is a 2-D image of instance labels: integers,
    none negative, each value one cell (not an intensity image, whose values are scattered in pieces)."""
    if labels.ndim != 2:
        raise ValueError(f"{where}: not a label image: shape {labels.shape}, expected 2-D")
    if not np.issubdtype(labels.dtype, np.integer):
        kind = "floating-point values" if np.issubdtype(labels.dtype, np.floating) else "values"
        raise ValueError(f"{where}: not a label image: {kind} ({labels.dtype}); expected integer labels")
    low = labels.min(initial=0)
    if low < 0:
        raise ValueError(f"{where}: negative labels (down to {low}); expected 0 for background and labels above")
    labelled = labels != 0
    same = np.zeros(labels.shape, bool)
    same[:, 1:] |= labels[:, 1:] == labels[:, :-1]
    same[:, :-1] |= labels[:, :-1] == labels[:, 1:]
    same[1:] |= labels[1:] == labels[:-1]
    same[:-1] |= labels[:-1] == labels[1:]
    coherence = same[labelled].mean() if labelled.any() else 1.0
    if coherence < SCATTERED:
        raise ValueError(f"{where}: not a label image: {coherence:.0%} of its labelled pixels share their value with "
                         "a neighbour (an intensity image?); expected one integer label per cell")
    if coherence >= COHERENT:
        return
    values = len(np.unique(labels[labelled]))
    pieces = int(skimage_measure.label(labels, background=0, connectivity=1).max())
    if pieces > PIECES_PER_LABEL * values:
        raise ValueError(f"{where}: not a label image: {values} values in {pieces} separate pieces (an intensity "
                         "image?); expected one integer label per cell")


_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits in a name


def label_files(folder: str) -> list[tuple[int, str, str]]:
    """(frame number, path, result name) of the label images of a folder, by frame number: maskTTT.tif
    (results), man_segTTT.tif or man_trackTTT.tif (truth; named maskTTT.tif as results), else every TIFF,
    numbered by the last number in its name (by name order when names do not number them all)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such folder")
    numbered = ctc.masks_by_index(folder)
    found = [(i, numbered[i], ctc.result_name(i, len(ctc.NUMBERED_MASK.match(os.path.basename(numbered[i])).group(1))))
             for i in sorted(numbered)]
    if found:
        return found
    paths = sorted(glob.glob(os.path.join(folder, "*.tif*")))
    if not paths:
        raise ValueError(f"{folder}: no label TIFFs (maskTTT.tif, or any .tif)")
    numbers = [_NUMBER.search(os.path.basename(path).split(".")[0]) for path in paths]
    if all(numbers) and len({int(n.group(1)) for n in numbers}) == len(paths):
        return sorted((int(n.group(1)), path, os.path.basename(path)) for n, path in zip(numbers, paths))
    return [(i, path, os.path.basename(path)) for i, path in enumerate(paths)]


def default_output(source: str) -> str:
    """Where `track_folder` writes by default: the folder itself, or `<stem>_RES` beside a stack (or a
    single TIFF file, a one-frame sequence)."""
    if os.path.isfile(source):
        return os.path.join(os.path.dirname(os.path.abspath(source)), f"{stacks.stem(source)}_RES")
    return source


FREE_MARGIN = 1 << 20  # bytes that must stay free beyond a mask's own size before it is written


def write_labels(path: str, labels: np.ndarray, shown: str) -> None:
    """`tiff.write_labels`, refusing in one line naming `shown` when the disk is full (checked first:
    libtiff would print its own lines before failing) or the write fails."""
    free = shutil.disk_usage(os.path.dirname(path)).free
    if free < 2 * labels.size + FREE_MARGIN:
        raise ValueError(f"{shown}: cannot write: the disk is full ({free // 1024} KiB left)")
    try:
        tiff.write_labels(path, labels)
    except OSError as error:
        raise ValueError(staging.cannot_write(error, shown)) from None


def track_folder(source: str, output_dir: str, config: Config = Config(), pixel_size: float | None = None,
                 frame_interval: float | None = None, progress=None, pictures: bool = False) -> dict:
    """Track the label images of `source`, a folder, a (T, Y, X) stack or one 2-D TIFF, into `output_dir`
    (relabelled masks of the same names, maskTTT.tif for a stack's frames, res_track.txt, tracks.csv; with
    `pictures`, overlays/trajectories.png and lineage.png); `output_dir` may be `source` itself. Frames
    are keyed by their number, and a missing number is a missing frame. Everything is written aside and
    moved into place at the end, so a bad frame or a full disk leaves `output_dir` as it was (ValueError
    naming the file). A stack's own pixel size is used when `pixel_size` is None."""
    with contextlib.ExitStack() as opened:
        if os.path.isfile(source):
            stack = opened.enter_context(stacks.Stack(source))
            pixel_size = stack.pixel_size if pixel_size is None else pixel_size
            digits = max(3, len(str(len(stack) - 1)))
            frames = [(i, functools.partial(stack.frame, i), ctc.result_name(i, digits), f"{source}, frame {i}")
                      for i in range(len(stack))]
        else:
            frames = [(i, functools.partial(tiff.read, path), name, path) for i, path, name in label_files(source)]
        recorder = Recorder(config)
        with staging.staged(output_dir, kind="track") as scratch:
            for done, (number, load, name, where) in enumerate(frames, start=1):
                labels = load()
                check_labels(labels, where)
                relabelled = recorder.add(labels, number)
                write_labels(os.path.join(scratch, name), relabelled, os.path.join(output_dir, name))
                if progress:
                    progress(done, len(frames))
            rows = recorder.write(scratch, os.path.join(scratch, TRACKS_TABLE), pixel_size, frame_interval)
            if pictures:
                recorder.draw(os.path.join(scratch, "overlays"), np.where(relabelled > 0, 90, 0).astype(np.uint8),
                              pixel_size, frame_interval)
    return {"frames": len(frames), "labels": len(recorder.tracker.rows()), "tracks": len(rows),
            "divisions": len(recorder.tracker.divided)}
