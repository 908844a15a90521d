"""Linking the instance labels of consecutive frames into tracks (numpy and scipy, no TensorFlow).

Frame by frame (`Tracker.add`, so a sequence of any length streams through), the
open tracks (the cells of the frame before, and those missing for up to
`Config.max_gap` frames) are linked to the new frame's objects:

- motion: each cell's displacement is predicted before its links are weighed.
  The first guesses are no motion and, when phase correlation finds the whole
  field jumped, that shift (stage drift: it must link at least half the cells,
  and three, well; whichever guess links at less cost wins).
  Then prediction and assignment alternate: one affine motion fitted to the
  links that overlap well, then local displacement fields, moving least-squares
  affine fits (Gaussian weights two cell lengths wide) of the displacements of
  the links confident so far, outliers dropped, plus half of what the prediction
  missed of the cell's own last step. A colony expanding radially is followed
  from its slow centre to its fast edge, not by one global shift;
- costs of a link from several cues: overlap of the cell's mask moved by its
  predicted displacement with the object (1 - IoU), distance from the predicted
  centroid, change of area and of shape (length, and orientation for elongated
  cells); a missing frame adds a small cost;
- divisions are explicit hypotheses: one mother, two daughters whose union
  matches her moved mask, each about half her area, her area kept, and for a rod
  (length over width above 2) the daughters side by side along her long axis,
  half her length apart (E. coli divides across its long axis into two
  half-length daughters, each overlapping the mother well under 50 %);
- one global assignment per frame pair picks continuations, divisions, births
  and ends at the least total cost (an object left unlinked costs `START`, a
  track left unlinked `END`). A division takes two objects at once, which the
  linear assignment problem cannot express, so the assignment is the 0/1
  program of scipy's `milp` (HiGHS); without division hypotheses it is scipy's
  `linear_sum_assignment` (tested), which the rounds that shape the motion use;
- an object that holds most of two cells of the frame before (moved by the
  field; each of a cell's size, seen for two frames or born of a division) and is
  not convex is cut between them (`split_merged`): touching cells that the
  segmentation merged in one frame keep their tracks;
- gap closing: a track missing for up to `max_gap` frames (or a frame absent
  from the sequence) stays open. The challenge's format allows no frame without
  its label inside a track, so the part after a gap gets a new label whose parent
  is the part before (a parent with one child is a gap, with two a division);
  `Tracker.lineages` tells which labels are one cell.

Why not laptrack: it links points by a distance, in two linear assignments
(frame to frame, then gap closing and splitting between segments). On the E.
coli colony's truth masks, linked by centroids with the best of three cutoffs,
it scored TRA 0.973 / LNK 0.80 (sequence 01) and 0.944 / 0.56 (sequence 02, 358
cells a frame moving up to 60 px), against 1.000 / 1.000 and 0.999 / 0.991
here: crowded cells that move more than their width need their masks' overlap
after motion compensation, and its splitting stage judges one daughter at a
time, not the pair against her mother. scipy's KD-tree, `milp` and the masks'
moments need no new dependency.
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
from scipy import ndimage, optimize, sparse, spatial
from skimage import measure as skimage_measure
from skimage import morphology, registration, segmentation

from cellseg import ctc, motility, preprocess, stacks, staging, tiff, track_pictures

TRACKS_TABLE = "tracks.csv"

# The assignment's costs, in units of one link's 1 - IoU (see `hypotheses`, `division_hypotheses`).
START = 1.25  # an object of the new frame that continues no track (a cell entering, or a segmentation error)
END = 1.25  # a track that continues into no object
GAP = 0.3  # per missing frame between a track's last frame and the object
DIVISION = 0.5  # a division over a continuation into one daughter and a new track for the other
DISTANCE = 0.5  # per square root of the cell's area between predicted and found centroid
SIZE = 1.0  # per unit of |log(area ratio)|
SHAPE = 1.0  # per unit of |log(length ratio)| and of sin^2 of the turn of an elongated cell
AXIS = 1.0  # a rod's daughters off her axis (1 - cos^2) or not half her length apart (|log|)
BALANCE = 0.5  # per unit of |log(area ratio)| of the two daughters
ROD = 2.0  # length over width above which a cell is a rod that divides across its long axis
FIELD_REACH = 2.0  # the displacement field's Gaussian width, in typical cell lengths
CONFIDENT_IOU = 0.3  # links at least this good (after motion) shape the displacement field
FIRST_CONFIDENT_IOU = 0.5  # the same for the first, global, motion
STEADY_AREA = 1.4  # nor may their area change by this factor (two cells merged, a cell cut in two)
OUTLIER_WIDTHS = 0.5  # a link whose move is off the field by more than this many cell widths may be wrong
CHOICES = 4  # continuations, and divisions, of one cell weighed by the assignment
PERSISTENCE = 0.5  # of what the prediction missed of a cell's last step, added to its next prediction
ROUNDS = 4  # prediction and assignment rounds per frame pair, at most
DRIFT_PIXELS = 512  # frames are shrunk to about this size to find a global shift
DRIFT_CELLS, DRIFT_SHARE = 3, 0.5  # a global shift must link this many cells well, and this share of them


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


@dataclasses.dataclass(frozen=True)
class Objects:
    """The objects of a label image, measured once: label, area, centroid (row, col), major axis (unit
    vector), length and width (4 sqrt of the second moments' eigenvalues, as scikit-image's axis lengths),
    and every pixel (rows of `pixels`, grouped by object; `owner` is the object of each)."""

    labels: np.ndarray
    area: np.ndarray
    centroid: np.ndarray
    axis: np.ndarray
    length: np.ndarray
    width: np.ndarray
    pixels: np.ndarray
    owner: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> Objects:
        """The objects at `index` (an integer array), in that order."""
        index = np.asarray(index, np.int64)
        sizes = self.area.astype(np.int64)
        starts, lengths = np.cumsum(sizes) - sizes, sizes[index]
        # The pixels of each object taken, one run after the other.
        runs = np.repeat(starts[index] - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        return Objects(self.labels[index], self.area[index], self.centroid[index], self.axis[index],
                       self.length[index], self.width[index], self.pixels[runs],
                       np.repeat(np.arange(len(index)), lengths))


def measure(labels: np.ndarray) -> Objects:
    """The objects of `labels` (label 0 is background; the labels present are read from the data)."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    values = flat[where]
    order = np.argsort(values, kind="stable")
    where, values = where[order], values[order]
    starts = np.flatnonzero(np.diff(values, prepend=values[:1] - 1)) if len(values) else np.zeros(0, np.int64)
    area = np.diff(np.append(starts, len(values))).astype(np.float64)
    rows, cols = np.divmod(where, labels.shape[1])
    owner = np.repeat(np.arange(len(starts)), area.astype(np.int64))
    if not len(starts):
        empty = np.zeros((0, 2))
        return Objects(np.zeros(0, np.int64), np.zeros(0), empty, empty, np.zeros(0), np.zeros(0),
                       np.zeros((0, 2), np.int32), np.zeros(0, np.int64))
    cy, cx = np.add.reduceat(rows, starts) / area, np.add.reduceat(cols, starts) / area
    dy, dx = rows - cy[owner], cols - cx[owner]
    syy, sxx, syx = (np.add.reduceat(a, starts) / area for a in (dy * dy, dx * dx, dy * dx))
    half_trace, root = (syy + sxx) / 2, np.sqrt(((syy - sxx) / 2) ** 2 + syx**2)
    major, minor = half_trace + root, np.maximum(half_trace - root, 0)
    angle = 0.5 * np.arctan2(2 * syx, syy - sxx)  # of the major axis, from the row axis
    return Objects(values[starts].astype(np.int64), area, np.stack([cy, cx], 1),
                   np.stack([np.cos(angle), np.sin(angle)], 1), 4 * np.sqrt(major), 4 * np.sqrt(minor),
                   np.stack([rows, cols], 1).astype(np.int32), owner)


def concatenate(parts: list[Objects]) -> Objects:
    offsets = np.cumsum([0] + [len(p) for p in parts])
    return Objects(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                     ("labels", "area", "centroid", "axis", "length", "width", "pixels")),
                   np.concatenate([p.owner + offset for p, offset in zip(parts, offsets)]))


def shifted(labels: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """`labels` moved by `shift` (rows, columns) pixels, zeros where nothing moved in."""
    rows, cols = (int(s) for s in shift)
    height, width = labels.shape
    moved = np.zeros_like(labels)
    if abs(rows) < height and abs(cols) < width:
        moved[max(rows, 0): height + min(rows, 0), max(cols, 0): width + min(cols, 0)] = \
            labels[max(-rows, 0): height + min(-rows, 0), max(-cols, 0): width + min(-cols, 0)]
    return moved


DRIFT_GAIN = 0.25  # of the previous frame's cell pixels off cells that the shift must bring onto cells


def global_shift(previous: np.ndarray, current: np.ndarray, step: int = 1) -> tuple[int, int]:
    """The whole-pixel shift that moves the cells of `previous` onto those of `current`; (0, 0) unless it
    brings at least `DRIFT_GAIN` of the previous cell pixels that lie off cells unshifted onto cells.
    With `step`, it is found on the masks shrunk by that factor (block means), to within `step` pixels."""
    before, after = np.asarray(previous) > 0, np.asarray(current) > 0
    if not before.any() or not after.any():
        return 0, 0
    found, _, _ = registration.phase_cross_correlation(shrunk(after, step), shrunk(before, step),
                                                       normalization=None)
    shift = (int(round(found[0])) * step, int(round(found[1])) * step)
    # Cells moving on their own make a shift of a few pixels fit some of them a little better; a drift
    # of the whole field makes it fit far better.
    covered = np.count_nonzero(before & after)
    gain = (np.count_nonzero(shifted(before, shift) & after) - covered) / max(before.sum() - covered, 1)
    return shift if shift != (0, 0) and gain >= DRIFT_GAIN else (0, 0)


def shrunk(mask: np.ndarray, step: int) -> np.ndarray:
    """The share of `mask` in each `step` x `step` block (float32)."""
    height, width = (size // step * step for size in mask.shape)
    total = np.zeros((height // step, width // step), np.float32)
    for row in range(step):
        for col in range(step):
            total += mask[row:height:step, col:width:step]
    return total / step**2


def drift(previous: np.ndarray, current: np.ndarray) -> tuple[int, int]:
    """`global_shift` found on the masks shrunk to about `DRIFT_PIXELS` a side: a first guess of motion
    that the displacement field refines."""
    return global_shift(previous, current, max(1, int(np.ceil(max(np.shape(current)) / DRIFT_PIXELS))))


def overlaps(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pixels shared by each label of `first` (rows) and of `second` (columns), label 0 included."""
    first, second = np.asarray(first, np.int64).ravel(), np.asarray(second, np.int64).ravel()
    columns = int(second.max(initial=0)) + 1
    counts = np.bincount(first * columns + second, minlength=(int(first.max(initial=0)) + 1) * columns)
    return counts.reshape(-1, columns)


DENSE_PAIRS = 1 << 22  # below this many possible pairs they are counted in one array, else sorted


def pair_counts(rows: np.ndarray, cols: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, count) of each distinct pair of the two index arrays."""
    keys = rows.astype(np.int64) * n_cols + cols
    if len(keys) and keys.max() < DENSE_PAIRS:
        counts = np.bincount(keys)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    return keys // n_cols, keys % n_cols, counts


def moved_overlaps(before: Objects, moves: np.ndarray, index_image: np.ndarray, n_after: int):
    """(row, col, shared pixels) of each cell of `before`, moved by its whole-pixel `moves` (rows, cols),
    and the object of `index_image` (object index, -1 on background) it lands on."""
    pixels = before.pixels + np.rint(moves).astype(np.int64)[before.owner]
    height, width = index_image.shape
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < height) & (pixels[:, 1] >= 0) & (pixels[:, 1] < width)
    hit = index_image[pixels[inside, 0], pixels[inside, 1]]
    on = hit >= 0
    return pair_counts(before.owner[inside][on], hit[on], n_after)


FIELD_CHUNK = 256  # query points of the displacement field fitted at once


def displacement_field(points: np.ndarray, moves: np.ndarray, queries: np.ndarray, reach: float,
                       stiffness: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """The displacement at each query point (n, 2) from known `moves` at `points` (k, 2), and the total
    weight behind each (0: no known move within reach): a moving least-squares affine fit with Gaussian
    weights of width `reach`. A ridge on the affine part, as if the points spread `stiffness` px, leaves
    a plain weighted mean where they are few or bunched, and lets a linear field (radial expansion)
    extend to the edge."""
    if len(queries) > FIELD_CHUNK:  # a few thousand cells: bounded memory
        parts = [displacement_field(points, moves, queries[start: start + FIELD_CHUNK], reach, stiffness)
                 for start in range(0, len(queries), FIELD_CHUNK)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    offsets = points[None, :, :] - queries[:, None, :]  # (n, k, 2)
    weights = np.exp(-(offsets**2).sum(-1) / (2 * reach**2))
    total = weights.sum(1)
    design = np.concatenate([np.ones(offsets.shape[:2] + (1,)), offsets], axis=-1)  # (n, k, 3)
    normal = np.einsum("nk,nki,nkj->nij", weights, design, design)
    normal[:, 1, 1] += total * stiffness**2 + 1e-9
    normal[:, 2, 2] += total * stiffness**2 + 1e-9
    normal[:, 0, 0] += 1e-9
    right = np.einsum("nk,nki,kd->nid", weights, design, moves)
    return np.linalg.solve(normal, right)[:, 0, :], total


def robust_field(points: np.ndarray, moves: np.ndarray, queries: np.ndarray, reach: float,
                 tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """`displacement_field` fitted again without the moves that are off the first fit by more than
    `tolerance` px and three times the median miss (links to the wrong cell)."""
    fitted, _ = displacement_field(points, moves, points, reach)
    miss = np.linalg.norm(fitted - moves, axis=1)
    keep = miss <= max(tolerance, 3 * float(np.median(miss)))
    return displacement_field(points[keep], moves[keep], queries, reach)


@dataclasses.dataclass(frozen=True)
class Hypotheses:
    """What the assignment chooses from: continuations (row, col) and divisions (row, col, col), with
    their costs and, for the displacement field, their overlap after motion."""

    continuations: np.ndarray  # (k, 2)
    continuation_cost: np.ndarray
    continuation_iou: np.ndarray
    divisions: np.ndarray  # (m, 3)
    division_cost: np.ndarray
    division_iou: np.ndarray


def rodness(cells: Objects) -> np.ndarray:
    """0 for round and oval cells, rising to 1 as length over width goes from `ROD` to twice that."""
    aspect = cells.length / np.maximum(cells.width, 1.0)
    return np.clip((aspect - ROD) / ROD, 0.0, 1.0)


def hypotheses(before: Objects, gaps: np.ndarray, moves: np.ndarray, after: Objects, index_image: np.ndarray,
               divisions: bool = True) -> Hypotheses:
    """Continuations and divisions of the cells `before` (missing for `gaps` - 1 frames, moving by `moves`)
    into the objects `after` whose centroid lies within a cell length of the predicted one, or that the moved
    cell overlaps, with their costs."""
    predicted = before.centroid + moves
    scale = np.sqrt(before.area)
    rows, cols, shared = moved_overlaps(before, moves, index_image, len(after))
    near = spatial.cKDTree(after.centroid).query_ball_point(predicted, np.maximum(before.length, 2 * scale))
    near_rows = np.repeat(np.arange(len(before)), [len(n) for n in near])
    near_cols = np.concatenate([np.asarray(n, np.int64) for n in near]) if len(near) else np.zeros(0, np.int64)
    keys = np.union1d(rows * len(after) + cols, near_rows * len(after) + near_cols)
    pair_rows, pair_cols = keys // len(after), keys % len(after)
    inter = np.zeros(len(keys))
    inter[np.searchsorted(keys, rows * len(after) + cols)] = shared
    union = before.area[pair_rows] + after.area[pair_cols] - inter
    iou = inter / union
    distance = np.linalg.norm(after.centroid[pair_cols] - predicted[pair_rows], axis=1) / scale[pair_rows]
    size = np.abs(np.log(after.area[pair_cols] / before.area[pair_rows]))
    turn = 1 - (before.axis[pair_rows] * after.axis[pair_cols]).sum(1) ** 2
    elongated = np.minimum(rodness(before)[pair_rows], rodness(after)[pair_cols])
    shape = np.abs(np.log(np.maximum(after.length[pair_cols], 1) / np.maximum(before.length[pair_rows], 1))) \
        + elongated * turn
    cost = (1 - iou) + DISTANCE * distance + SIZE * size + SHAPE * shape + GAP * (gaps[pair_rows] - 1)
    continuations = np.stack([pair_rows, pair_cols], 1)
    if not divisions:
        return Hypotheses(continuations, cost, iou, np.zeros((0, 3), np.int64), np.zeros(0), np.zeros(0))
    division, division_cost, division_iou = division_hypotheses(before, gaps, predicted, after, pair_rows,
                                                                pair_cols, inter)
    return Hypotheses(continuations, cost, iou, division, division_cost, division_iou)


@functools.lru_cache(maxsize=64)
def pairs_of(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The index pairs (i < j) of `count` things."""
    return np.triu_indices(count, 1)


def division_hypotheses(before: Objects, gaps: np.ndarray, predicted: np.ndarray, after: Objects,
                        pair_rows: np.ndarray, pair_cols: np.ndarray, inter: np.ndarray):
    """(mother, daughter, daughter) triples among each cell's candidate objects whose daughters are each
    about half her area and together about all of it, with their costs and the union's IoU with her."""
    ratio = after.area[pair_cols] / before.area[pair_rows]
    fits = (ratio > 0.25) & (ratio < 0.85)
    rows, cols, shared = pair_rows[fits], pair_cols[fits], inter[fits]
    bounds = np.flatnonzero(np.diff(rows, prepend=-1, append=len(before) + 1))
    first, second, mothers = [], [], []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop - start > 1:
            a, b = pairs_of(stop - start)
            first.append(start + a)
            second.append(start + b)
    if not first:
        return np.zeros((0, 3), np.int64), np.zeros(0), np.zeros(0)
    first, second = np.concatenate(first), np.concatenate(second)
    mothers = rows[first]
    one, two = cols[first], cols[second]
    area_one, area_two, area = after.area[one], after.area[two], before.area[mothers]
    together = (area_one + area_two) / area
    keep = (together > 0.7) & (together < 1.5)
    first, second, mothers, one, two = first[keep], second[keep], mothers[keep], one[keep], two[keep]
    area_one, area_two, area = area_one[keep], area_two[keep], area[keep]
    shared_union = shared[first] + shared[second]
    iou = shared_union / (area + area_one + area_two - shared_union)
    centre = (after.centroid[one] * area_one[:, None] + after.centroid[two] * area_two[:, None]) \
        / (area_one + area_two)[:, None]
    distance = np.linalg.norm(centre - predicted[mothers], axis=1) / np.sqrt(area)
    size = np.abs(np.log((area_one + area_two) / area))
    apart = after.centroid[two] - after.centroid[one]
    separation = np.maximum(np.linalg.norm(apart, axis=1), 1e-6)
    along = ((apart * before.axis[mothers]).sum(1) / separation) ** 2
    axis = np.abs(np.log(separation / np.maximum(before.length[mothers] / 2, 1))) + (1 - along)
    cost = (1 - iou) + DISTANCE * distance + SIZE * size + AXIS * rodness(before)[mothers] * axis \
        + BALANCE * np.abs(np.log(area_one / area_two)) + DIVISION + GAP * (gaps[mothers] - 1)
    return np.stack([mothers, one, two], 1), cost, iou


def best_of_each(groups: np.ndarray, costs: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` lowest costs of each group."""
    order = np.lexsort((costs, groups))
    sorted_groups = groups[order]
    first = np.searchsorted(sorted_groups, sorted_groups)  # where each one's group begins
    return np.sort(order[np.arange(len(order)) - first < count])


def assign(found: Hypotheses, n_before: int, n_after: int) -> tuple[np.ndarray, np.ndarray]:
    """The chosen continuations and divisions (indices into `found`): each cell and each object in at most
    one, at the least total cost, an unlinked object costing `START` and an unlinked cell `END`. Only
    hypotheses cheaper than leaving their cell and objects unlinked, and among their cell's `CHOICES`
    cheapest, are weighed."""
    gain_continuation = found.continuation_cost - START - END
    gain_division = found.division_cost - 2 * START - END
    worth = [np.flatnonzero(gain_continuation < 0), np.flatnonzero(gain_division < 0)]
    worth[0] = worth[0][best_of_each(found.continuations[worth[0], 0], gain_continuation[worth[0]], CHOICES)]
    worth[1] = worth[1][best_of_each(found.divisions[worth[1], 0], gain_division[worth[1]], CHOICES)]
    k, m = len(worth[0]), len(worth[1])
    if not k + m:
        return worth
    links, splits = found.continuations[worth[0]], found.divisions[worth[1]]
    rows = np.concatenate([links[:, 0], n_before + links[:, 1], splits[:, 0], n_before + splits[:, 1],
                           n_before + splits[:, 2]])
    columns = np.concatenate([np.arange(k), np.arange(k), k + np.arange(m), k + np.arange(m), k + np.arange(m)])
    matrix = sparse.csr_array((np.ones(len(rows)), (rows, columns)), shape=(n_before + n_after, k + m))
    costs = np.concatenate([gain_continuation[worth[0]], gain_division[worth[1]]])
    solved = optimize.milp(costs, constraints=optimize.LinearConstraint(matrix, -np.inf, 1),
                           integrality=np.ones(k + m), bounds=optimize.Bounds(0, 1))
    chosen = np.flatnonzero(solved.x > 0.5)
    return worth[0][chosen[chosen < k]], worth[1][chosen[chosen >= k] - k]


DENSE_ASSIGNMENT = 1 << 24  # above this many cell x object pairs continuations are assigned by `assign`


def assign_continuations(found: Hypotheses, n_before: int, n_after: int) -> np.ndarray:
    """The continuations (indices into `found`) that `assign` would choose if no division were weighed, by
    scipy's `linear_sum_assignment` (faster than the 0/1 program): a link's cost instead of `START` + `END`."""
    gain = found.continuation_cost - START - END
    worth = np.flatnonzero(gain < 0)
    worth = worth[best_of_each(found.continuations[worth, 0], gain[worth], CHOICES)]
    if n_before * n_after > DENSE_ASSIGNMENT:
        alone = dataclasses.replace(found, divisions=np.zeros((0, 3), np.int64), division_cost=np.zeros(0))
        return assign(alone, n_before, n_after)[0]
    rows, cols = found.continuations[worth].T
    gains, index = np.zeros((n_before, n_after)), np.full((n_before, n_after), -1)
    gains[rows, cols], index[rows, cols] = gain[worth], worth
    picked = index[optimize.linear_sum_assignment(gains)]
    return np.sort(picked[picked >= 0])


@dataclasses.dataclass(frozen=True)
class Links:
    """The links of one frame pair: (row, col) continuations, (row, col, col) divisions, and each cell's
    displacement as finally predicted."""

    continuations: np.ndarray
    divisions: np.ndarray
    moves: np.ndarray


def total_cost(found: Hypotheses, chosen: tuple[np.ndarray, np.ndarray]) -> float:
    """What the chosen links save over leaving every cell and object unlinked (negative: they are worth it)."""
    return float((found.continuation_cost[chosen[0]] - START - END).sum()
                 + (found.division_cost[chosen[1]] - 2 * START - END).sum())


def link(before: Objects, gaps: np.ndarray, guesses: list[np.ndarray], after: Objects, index_image: np.ndarray,
         divisions: bool = True, lag: np.ndarray | None = None) -> Links:
    """Link the cells `before` (last seen `gaps` frames ago; `guesses`: first guesses of their
    displacements; `lag`: what the prediction missed of each one's last step, per frame) to the objects
    `after` (`index_image`: the object at each pixel, -1 on background): assignment and displacement field
    in turn (`ROUNDS`), from each guess; the links that cost least win."""
    lag = np.zeros((len(before), 2)) if lag is None else lag
    found = [refine(before, gaps, guess, after, index_image, divisions, lag) for guess in guesses]
    # A stage drift moves every cell: a shift that only a cell or two follow (a cell passing by another's
    # old place) is no drift.
    needed = max(DRIFT_CELLS, DRIFT_SHARE * min(len(before), len(after)))
    found = found[:1] + [one for one in found[1:] if one[1] >= needed]
    return min(found, key=lambda one: one[0])[2]


def refine(before: Objects, gaps: np.ndarray, guess: np.ndarray, after: Objects, index_image: np.ndarray,
           divisions: bool, lag: np.ndarray) -> tuple[float, int, Links]:
    """(total cost, continuations that overlap well, links) of `link` from one first guess of the cells'
    displacements. The rounds that
    shape the displacement field weigh continuations only (`assign_continuations`); the last one, at the
    final field, divisions too (`assign`)."""
    moves = guess.astype(np.float64)
    typical = float(np.median(np.concatenate([before.length, after.length])))
    for round_ in range(ROUNDS - 1):
        found = hypotheses(before, gaps, moves, after, index_image, divisions=False)
        chosen = assign_continuations(found, len(before), len(after))
        links = found.continuations[chosen]
        # The first, global, fit takes only links that need no motion to overlap well (a colony's centre);
        # a link whose area jumps may be two cells merged by the segmentation, or a mother and one of her
        # daughters: it does not show motion.
        confident = FIRST_CONFIDENT_IOU if round_ == 0 else CONFIDENT_IOU
        steady = np.abs(np.log(after.area[links[:, 1]] / before.area[links[:, 0]])) < np.log(STEADY_AREA)
        sure = (found.continuation_iou[chosen] >= confident) & steady
        if not sure.any():
            break
        rows = links[sure, 0]
        per_frame = (after.centroid[links[sure, 1]] - before.centroid[rows]) / gaps[rows, None]
        # First one affine motion for the whole frame, then local fields: a link wrong at the edge of a
        # colony cannot bend the field there before the links of its centre have set it.
        reach = np.inf if round_ == 0 else FIELD_REACH * max(typical, 1.0)
        field, weight = robust_field(before.centroid[rows], per_frame, before.centroid, reach,
                                     OUTLIER_WIDTHS * float(np.median(before.width)))
        # A cell pushed through a crowd keeps part of its own motion relative to its neighbours'.
        updated = np.where(weight[:, None] > 1e-3, (field + PERSISTENCE * lag) * gaps[:, None], moves)
        converged = np.abs(updated - moves).max() < 0.5
        moves = updated
        if converged:
            break
    found = hypotheses(before, gaps, moves, after, index_image, divisions)
    chosen = assign(found, len(before), len(after))
    return (total_cost(found, chosen), int((found.continuation_iou[chosen[0]] >= FIRST_CONFIDENT_IOU).sum()),
            Links(found.continuations[chosen[0]], found.divisions[chosen[1]], moves))


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
        self.open = measure(np.zeros((1, 1), np.int64))
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
        after = measure(labels)
        compact = np.zeros(labels.shape, np.int64)  # labels 1..n, however the input numbered its objects
        compact[after.pixels[:, 0], after.pixels[:, 1]] = after.owner + 1
        waiting = np.flatnonzero(frame - self.open_frame - 1 <= self.config.max_gap)
        before, gaps = self.open.take(waiting), frame - self.open_frame[waiting]
        track_of = np.zeros(len(after), np.int64)
        lag = np.zeros((len(after), 2))
        consumed = np.zeros(len(before), bool)
        if len(before) and len(after):
            links = link(before, gaps, self._guesses(labels, len(waiting)), after, compact - 1, self.config.divisions,
                         self.open_lag[waiting])
            # Cells of the frame before that are trusted to cut an object holding two of them.
            last = np.flatnonzero((gaps == frame - previous) & np.isin(before.labels, self._settled(previous)))
            if self.config.split_merged and holds_two(before.take(last), links.moves[last], compact - 1, len(after)):
                cut = split_merged(self._moved(before.take(last), links.moves[last]), compact, before.labels[last])
                if cut.max() > compact.max():
                    compact, after = cut, measure(cut)
                    track_of, lag = np.zeros(len(after), np.int64), np.zeros((len(after), 2))
                    links = link(before, gaps, [links.moves], after, compact - 1, self.config.divisions,
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
        self.open = concatenate([self.seen, self.open.take(kept)])
        self.open_frame = np.concatenate([np.full(len(after), frame), self.open_frame[kept]])
        self.open_lag = np.concatenate([lag, self.open_lag[kept]])
        self.last_image = relabelled.astype(np.uint16)
        return self.last_image

    def _guesses(self, labels: np.ndarray, count: int) -> list[np.ndarray]:
        """First guesses of the displacement of each of `count` waiting cells: none, and a global shift when
        the whole field seems to have jumped (stage drift; an expanding colony can seem to). (A cell's own
        last step is a worse guess: it carries a jump of the frame before into this one.)"""
        guesses = [np.zeros((count, 2))]
        shift = drift(self.last_image, labels) if self.config.drift and self.last_image is not None else (0, 0)
        if shift != (0, 0):
            guesses.append(np.tile(np.asarray(shift, np.float64), (count, 1)))
        return guesses

    def _settled(self, previous: int) -> list[int]:
        """Tracks of the frame before seen for two frames or born of a division: trusted to cut an object
        (cells seen for one frame only and born of no division may be fragments of one cell)."""
        return [t.label for t in self.tracks.values() if t.last == previous and (t.first < t.last or t.parent)]

    def _moved(self, cells: Objects, moves: np.ndarray) -> np.ndarray:
        """`cells`, each moved by its predicted displacement, as a label image (their track labels)."""
        image = np.zeros(self.last_image.shape, np.int64)
        height, width = image.shape
        pixels = cells.pixels + np.rint(moves).astype(np.int64)[cells.owner]
        inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < height) & (pixels[:, 1] >= 0) & (pixels[:, 1] < width)
        image[pixels[inside, 0], pixels[inside, 1]] = cells.labels[cells.owner[inside]]
        return image

    def _apply(self, links: Links, before: Objects, gaps: np.ndarray, track_of: np.ndarray,
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


def holds_two(cells: Objects, moves: np.ndarray, index_image: np.ndarray, count: int) -> bool:
    """Whether one of the `count` objects of `index_image` holds most of two of `cells` moved by `moves`
    (`split_merged` has something to look at)."""
    rows, cols, shared = moved_overlaps(cells, moves, index_image, count)
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
    if not labelled.any() or same[labelled].mean() >= COHERENT:
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
