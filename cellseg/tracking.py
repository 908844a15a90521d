"""Linking the instance labels of consecutive frames into tracks (numpy and scipy, no TensorFlow).

Frame by frame (`Tracker.add`, so a sequence of any length streams through):

- the global shift from the previous frame is estimated by phase correlation of
  the two cell masks (scikit-image) and kept only when it makes the masks overlap
  more (stage drift of tens of pixels; cells moving on their own leave it at 0);
- the cells of the previous frame, shifted, are matched to the new frame's objects
  by an optimal assignment (scipy's `linear_sum_assignment`) on 1 - IoU, pairs of
  IoU below `Config.min_iou` never matched;
- a new object left unmatched that lies mostly on a cell already matched to
  another new object is that cell's second daughter: the cell's track ends and
  both daughters start tracks with it as parent (the challenge's division);
- before matching, an object that holds most of two cells of the previous frame
  (each of a cell's size, and seen for two frames or born of a division) and is
  not convex is cut between them (`split_merged`): touching cells that the
  segmentation merged in one frame keep their tracks;
- a track that was not seen in the previous frame is looked for by its last mask
  (gap closing, up to `Config.max_gap` frames). The challenge's format allows no
  frame without its label inside a track, so the part after the gap gets a new
  label whose parent is the part before (a parent with one child is a gap, with
  two a division); `Tracker.lineages` tells which labels are one cell.

Overlap linking with an assignment solver is a strong baseline when segmentation
is good, and costs no dependency beyond scipy; the measured TRA is in the README.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import glob
import os

import numpy as np
from scipy import ndimage, optimize
from skimage import morphology, registration, segmentation

from PIL import Image

from cellseg import ctc, motility, preprocess, stacks, tiff, track_pictures

TRACKS_TABLE = "tracks.csv"


@dataclasses.dataclass(frozen=True)
class Config:
    min_iou: float = 0.1  # below it two objects of consecutive frames are never one cell
    max_gap: int = 1  # frames a cell may be missing and still be linked
    division_overlap: float = 0.5  # a daughter lies on its parent (shifted) by at least this fraction of its area
    drift: bool = True  # estimate and remove a global shift between frames
    split_merged: bool = True  # cut an object that holds two or more cells of the frame before between them

    def __post_init__(self):
        if not 0 < self.min_iou < 1:
            raise ValueError(f"min_iou must be in (0, 1), got {self.min_iou}")
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


def shifted(labels: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """`labels` moved by `shift` (rows, columns) pixels, zeros where nothing moved in."""
    rows, cols = (int(s) for s in shift)
    height, width = labels.shape
    moved = np.zeros_like(labels)
    if abs(rows) < height and abs(cols) < width:
        moved[max(rows, 0): height + min(rows, 0), max(cols, 0): width + min(cols, 0)] = \
            labels[max(-rows, 0): height + min(-rows, 0), max(-cols, 0): width + min(-cols, 0)]
    return moved


DRIFT_GAIN = 0.25  # of the previous frame's cell pixels that the shift must bring onto cells


def global_shift(previous: np.ndarray, current: np.ndarray) -> tuple[int, int]:
    """The whole-pixel shift that moves the cells of `previous` onto those of `current`; (0, 0) unless it
    brings at least `DRIFT_GAIN` of the previous cell pixels onto cells that it did not cover unshifted."""
    before, after = np.asarray(previous) > 0, np.asarray(current) > 0
    if not before.any() or not after.any():
        return 0, 0
    found, _, _ = registration.phase_cross_correlation(after.astype(np.float32), before.astype(np.float32),
                                                       normalization=None)
    shift = (int(round(found[0])), int(round(found[1])))
    # Cells moving on their own make a shift of a few pixels fit some of them a little better; a drift
    # of the whole field makes it fit far better.
    gain = (np.count_nonzero(shifted(before, shift) & after) - np.count_nonzero(before & after)) / before.sum()
    return shift if shift != (0, 0) and gain >= DRIFT_GAIN else (0, 0)


def overlaps(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pixels shared by each label of `first` (rows) and of `second` (columns), label 0 included."""
    first, second = np.asarray(first, np.int64).ravel(), np.asarray(second, np.int64).ravel()
    columns = int(second.max(initial=0)) + 1
    counts = np.bincount(first * columns + second, minlength=(int(first.max(initial=0)) + 1) * columns)
    return counts.reshape(-1, columns)


MERGED_SHARE = 0.5  # of a cell's area that must lie in one object for that object to hold it
FRAGMENT = 0.5  # of the typical (median) cell area of the frame before: a smaller piece may be part of a cell
# Area over convex hull area: two round cells side by side (a waist between them) stay below it, one
# round or elongated cell is above it; a cell drawn in two pieces before and whole now is not cut.
MERGED_SOLIDITY = 0.9


def split_merged(previous: np.ndarray, labels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """`labels` with each object that holds most (`MERGED_SHARE`) of two or more of `cells`, labels of
    `previous` (the frame before, shifted onto this one), and is not convex (solidity under
    `MERGED_SOLIDITY`), cut between them: a watershed of the object's distance map from the parts of it
    that each cell covers. New pieces take labels above the frame's largest."""
    labels = np.asarray(labels)
    shared = overlaps(previous, labels)
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


class Tracker:
    """Links frames given one by one (`add`); `tracks` and `lineages` once all are in."""

    def __init__(self, config: Config = Config()):
        self.config = config
        self.tracks: dict[int, Track] = {}
        self.frame = -1
        self.history: list[tuple[np.ndarray, tuple[int, int]]] = []  # last frames (relabelled) and their shifts
        self.next_label = 1
        self.divided: set[int] = set()
        self.cell: dict[int, int] = {}  # label -> the first label of its cell (gaps bridged)

    def _new(self, parent: int = 0, gap: bool = False) -> int:
        label = self.next_label
        self.next_label += 1
        self.tracks[label] = Track(label, self.frame, self.frame, parent)
        self.cell[label] = self.cell[parent] if gap else label
        if gap:
            self.tracks[parent].gap_child = label
        return label

    def add(self, labels: np.ndarray) -> np.ndarray:
        """The frame's instance labels relabelled by track (uint16), linked to the frames added before."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise ValueError(f"tracking needs 2-D label images, got shape {labels.shape}")
        if self.history and labels.shape != self.history[-1][0].shape:
            raise ValueError(f"frame {self.frame + 1} is {labels.shape}, the one before {self.history[-1][0].shape}")
        self.frame += 1
        shift = (0, 0)
        if self.history:
            previous = self.history[-1][0]
            shift = global_shift(previous, labels) if self.config.drift else (0, 0)
            if self.config.split_merged:
                # Cells seen for one frame only and born of no division may be fragments of one cell:
                # they are not trusted to cut an object.
                settled = [t.label for t in self.tracks.values()
                           if t.last == self.frame - 1 and (t.first < t.last or t.parent)]
                labels = split_merged(shifted(previous, shift), labels, settled)
        objects = np.unique(labels[labels > 0])
        to_track = np.zeros(int(labels.max(initial=0)) + 1, np.int64)
        if self.history:
            self._link(labels, objects, to_track, shift)
        for obj in objects[to_track[objects] == 0]:
            to_track[obj] = self._new()
        relabelled = to_track[labels]
        if not preprocess.labels_fit(relabelled):
            raise ValueError(f"{relabelled.max()} tracks do not fit uint16 labels")
        relabelled = relabelled.astype(np.uint16)
        self.history = (self.history + [(relabelled, shift)])[-(self.config.max_gap + 1):]
        return relabelled

    def _link(self, labels: np.ndarray, objects: np.ndarray, to_track: np.ndarray, shift: tuple[int, int]) -> None:
        """Fill `to_track` (object -> track label) for the objects that continue or divide, the frame before
        moved by `shift`."""
        previous = self.history[-1][0]
        # Rows: the previous frame's tracks, then those last seen a few frames back (gaps).
        candidates = [(shifted(previous, shift), np.unique(previous[previous > 0]), False)]
        total = shift
        for back in range(2, len(self.history) + 1):
            older, (rows_moved, cols_moved) = self.history[-back][0], self.history[-back + 1][1]
            total = (total[0] + rows_moved, total[1] + cols_moved)  # from frame t - back to t
            waiting = [t.label for t in self.tracks.values()
                       if t.last == self.frame - back and not t.gap_child and t.label not in self.divided]
            if waiting:
                kept = np.where(np.isin(older, waiting), older, 0)
                candidates.append((shifted(kept, total), np.asarray(waiting), True))
        rows, gap_rows, blocks = [], [], []
        area_now = np.bincount(labels.ravel().astype(np.int64))
        for image, tracks, is_gap in candidates:
            shared = overlaps(image, labels)
            area = shared.sum(axis=1)
            inter = shared[np.ix_(tracks, objects)]
            union = area[tracks][:, None] + area_now[objects][None, :] - inter  # at least the object's area
            blocks.append((inter, inter / union, area[tracks]))
            rows += list(tracks)
            gap_rows += [is_gap] * len(tracks)
        if not rows or not len(objects):
            return
        inter = np.concatenate([b[0] for b in blocks])
        iou = np.concatenate([b[1] for b in blocks])
        track_area = np.concatenate([b[2] for b in blocks])
        gap_rows = np.asarray(gap_rows)
        cost = np.where(iou >= self.config.min_iou, 1.0 - iou + 0.01 * gap_rows[:, None], 10.0)
        matched_rows, matched_cols = optimize.linear_sum_assignment(cost)
        keep = iou[matched_rows, matched_cols] >= self.config.min_iou
        matched_rows, matched_cols = matched_rows[keep], matched_cols[keep]
        child_of_row = dict(zip(matched_rows.tolist(), matched_cols.tolist()))
        # Divisions: an unmatched object lying on a previous-frame cell that continues into another object.
        taken = set(matched_cols.tolist())
        divisions: dict[int, list[int]] = {}
        for col in range(len(objects)):
            if col in taken:
                continue
            share = np.where(gap_rows, 0, inter[:, col]) / max(area_now[objects[col]], 1)
            row = int(np.argmax(share))
            if share[row] >= self.config.division_overlap and row in child_of_row and row not in divisions:
                sister = child_of_row[row]
                halves = area_now[objects[col]] + area_now[objects[sister]]
                if halves <= 1.5 * track_area[row] and inter[row, sister] / max(area_now[objects[sister]], 1) >= \
                        self.config.division_overlap:
                    divisions[row] = [sister, col]
        for row, col in child_of_row.items():
            label = int(rows[row])
            if row in divisions:
                continue
            if gap_rows[row]:
                to_track[objects[col]] = self._new(parent=label, gap=True)
            else:
                self.tracks[label].last = self.frame
                to_track[objects[col]] = label
        for row, cols in divisions.items():
            self.divided.add(int(rows[row]))
            for col in cols:
                to_track[objects[col]] = self._new(parent=int(rows[row]))

    def rows(self) -> list[tuple[int, int, int, int]]:
        """The challenge's res_track.txt rows: (label, first frame, last frame, parent)."""
        return [(t.label, t.first, t.last, t.parent) for t in sorted(self.tracks.values(), key=lambda t: t.label)]

    def lineages(self) -> dict[int, int]:
        """label -> the label of the cell it continues after gaps (itself when it starts a cell)."""
        return dict(self.cell)


def observe(frame: int, labels: np.ndarray) -> list[tuple[int, int, float, float, int]]:
    """(frame, label, centroid row, centroid column, area) of each object of a label image."""
    labels = np.asarray(labels, np.int64)
    area = np.bincount(labels.ravel())
    rows, cols = np.indices(labels.shape)
    sum_y, sum_x = np.bincount(labels.ravel(), rows.ravel()), np.bincount(labels.ravel(), cols.ravel())
    return [(frame, label, sum_y[label] / area[label], sum_x[label] / area[label], int(area[label]))
            for label in np.flatnonzero(area)[1:] if label]


class Recorder:
    """A tracker that also keeps each object's centroid and area, and writes the results of a sequence:
    the challenge's `res_track.txt` and `tracks.csv` (`motility.tracks_table`)."""

    def __init__(self, config: Config = Config()):
        self.tracker = Tracker(config)
        self.observations: list[tuple[int, int, float, float, int]] = []

    def add(self, labels: np.ndarray) -> np.ndarray:
        relabelled = self.tracker.add(labels)
        self.observations += observe(self.tracker.frame, relabelled)
        return relabelled

    def cell_parents(self) -> dict[int, int]:
        """cell -> its parent cell (0: none); a cell bridged over gaps is one cell."""
        cell_of, tracks = self.tracker.lineages(), self.tracker.tracks
        parents = {cell: 0 for cell in set(cell_of.values())}
        for track in tracks.values():
            if track.parent and tracks[track.parent].gap_child != track.label:
                parents[cell_of[track.label]] = cell_of[track.parent]
        return parents

    def draw(self, folder: str, last_frame: np.ndarray) -> None:
        """trajectories.png (the paths over `last_frame`, uint8 grey) and lineage.png into `folder`."""
        cell_of, parents = self.tracker.lineages(), self.cell_parents()
        paths, spans = {}, {}
        for frame, label, y, x, _ in sorted(self.observations):
            cell = cell_of[label]
            paths.setdefault(cell, []).append((y, x))
            first, _ = spans.get(cell, (frame, frame))
            spans[cell] = (first, frame)
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(track_pictures.trajectories(last_frame, paths, parents)).save(
            os.path.join(folder, "trajectories.png"))
        Image.fromarray(track_pictures.lineage_tree(spans, parents, self.tracker.frame + 1)).save(
            os.path.join(folder, "lineage.png"))

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


def label_files(folder: str) -> list[tuple[str, str]]:
    """(path, result name) of the label images of a folder in frame order: maskTTT.tif (results),
    man_segTTT.tif or man_trackTTT.tif (truth; named maskTTT.tif as results), else every TIFF by name."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such folder")
    numbered = ctc.masks_by_index(folder)
    found = [(numbered[i], ctc.result_name(i, len(ctc.NUMBERED_MASK.match(os.path.basename(numbered[i])).group(1))))
             for i in sorted(numbered)]
    if not found:
        found = [(path, os.path.basename(path)) for path in sorted(glob.glob(os.path.join(folder, "*.tif*")))]
    if not found:
        raise ValueError(f"{folder}: no label TIFFs (maskTTT.tif, or any .tif)")
    return found


def default_output(source: str) -> str:
    """Where `track_folder` writes by default: the folder itself, or `<stem>_RES` beside a stack."""
    if stacks.is_stack(source):
        return os.path.join(os.path.dirname(os.path.abspath(source)), f"{stacks.stem(source)}_RES")
    return source


def track_folder(source: str, output_dir: str, config: Config = Config(), pixel_size: float | None = None,
                 frame_interval: float | None = None, progress=None, pictures: bool = False) -> dict:
    """Track the label images of `source`, a folder or a (T, Y, X) stack, into `output_dir` (relabelled
    masks of the same names, maskTTT.tif for a stack's frames, res_track.txt, tracks.csv; with `pictures`,
    overlays/trajectories.png and lineage.png drawn over the last mask); `output_dir` may be `source`
    itself. A stack's own pixel size is used when `pixel_size` is None."""
    with contextlib.ExitStack() as opened:
        if stacks.is_stack(source):
            stack = opened.enter_context(stacks.Stack(source))
            pixel_size = stack.pixel_size if pixel_size is None else pixel_size
            digits = max(3, len(str(len(stack) - 1)))
            frames = [(functools.partial(stack.frame, i), ctc.result_name(i, digits), f"{source}, frame {i}")
                      for i in range(len(stack))]
        else:
            frames = [(functools.partial(tiff.read, path), name, path) for path, name in label_files(source)]
        os.makedirs(output_dir, exist_ok=True)
        recorder = Recorder(config)
        for done, (load, name, where) in enumerate(frames, start=1):
            labels = load()
            if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"{where}: not a label image (2-D integers), got {labels.dtype} {labels.shape}")
            relabelled = recorder.add(labels)
            out = os.path.join(output_dir, name)
            temporary = out + ".part.tif"
            tiff.write_labels(temporary, relabelled)
            os.replace(temporary, out)
            if progress:
                progress(done, len(frames))
    rows = recorder.write(output_dir, os.path.join(output_dir, TRACKS_TABLE), pixel_size, frame_interval)
    if pictures:
        recorder.draw(os.path.join(output_dir, "overlays"), np.where(relabelled > 0, 90, 0).astype(np.uint8))
    return {"frames": len(frames), "labels": len(recorder.tracker.rows()), "tracks": len(rows),
            "divisions": len(recorder.tracker.divided)}
