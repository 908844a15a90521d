"""Linking the objects of one frame pair: the cells that may continue to the new frame's objects (numpy
and scipy, no TensorFlow).

`link` takes the cells (measured once, `measure`), the frames since each was last seen and first guesses
of their motion, and returns the continuations and divisions chosen, with each cell's displacement as
finally predicted:

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
  `linear_sum_assignment` (tested), which the rounds that shape the motion use.

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

import dataclasses
import functools

import numpy as np
from scipy import optimize, sparse, spatial
from skimage import registration

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

