"""From network outputs to instance labels (numpy, no Keras), for every training target.

Each target gives a foreground mask and seeds, and a seeded watershed grows
one object per seed inside the mask:

- `binary` (cell probability): mask = probability > mask_threshold; seeds are
  the maxima of the mask's distance transform that rise by more than
  `seed_threshold` pixels (h-maxima), so a narrow neck between two round cells
  separates them while the ridge along one elongated cell does not cut it;
- `three_class` (background, interior, boundary probabilities): mask = 1 -
  p_background > mask_threshold; seeds = p_interior > seed_threshold, kept
  apart by the boundary class where cells touch, or (`seed_peaks`) the peaks of
  p_interior (smoothed by `PEAK_SMOOTHING`) that rise `seed_threshold` above the
  pass to any higher one, which part touching cells where the network drew no
  boundary but its interior dips between them;
- `distance` (cell distance, neighbour distance): mask = cell distance >
  mask_threshold; seeds = cell - neighbour distance > seed_threshold, the
  cell centres with the contacts between cells subtracted (Scherr et al. 2020);
  the watershed runs on the cell distance rescaled to pixels per cell.

Objects under `min_size` pixels are dropped and holes filled. `tune` picks the
thresholds (and for `three_class` the kind of seed) and the minimum size that
maximise the SEG measure on validation frames.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy import ndimage
from skimage import morphology, segmentation

from cellseg import preprocess, scores, targets

# Of the median reference object area. Half the median (tried before) dropped the small cells of
# held-out frames: synthetic fluorescence SEG 0.853 with 217 px against 0.925 with 92 px.
MIN_SIZE_FRACTIONS = (0.0, 0.1, 0.25)
PEAK_SMOOTHING = 1.0  # Gaussian sigma (px) of the interior probability before its peaks are found


@dataclasses.dataclass(frozen=True)
class Postprocess:
    """How one target's outputs become instances; None thresholds take the target's defaults."""

    target: str = targets.DEFAULT
    mask_threshold: float | None = None
    seed_threshold: float | None = None  # binary: h-maxima height in pixels
    min_size: int = 10  # objects of fewer pixels are dropped
    fill_holes: bool = True
    seed_peaks: bool = False  # three_class: seeds are the interior's peaks rising seed_threshold, not its level

    @property
    def seed_name(self) -> str:
        return "seed peak height" if self.seed_peaks else "seed threshold"

    def describe(self) -> str:
        """The thresholds in words, as the commands print them."""
        return (f"mask threshold {self.mask_threshold:g}, {self.seed_name} {self.seed_threshold:g}, "
                f"min size {self.min_size} px")

    def __post_init__(self):
        row = targets.get(self.target)
        if self.mask_threshold is None:
            object.__setattr__(self, "mask_threshold", row.mask_threshold)
        if self.seed_threshold is None:
            object.__setattr__(self, "seed_threshold", row.seed_threshold)
        for name, bounds in (("mask_threshold", row.mask_range), ("seed_threshold", row.seed_range)):
            if not _within(float(getattr(self, name)), bounds):
                raise ValueError(f"{self.target} {name} must be {_say(bounds)}, got {getattr(self, name)}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {self.min_size}")
        if self.seed_peaks and not row.peak_grid:
            raise ValueError(f"seed_peaks is for the interior probability of three_class, not {self.target}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Postprocess:
        """Settings from `to_dict`'s keys; others (a stored score, say) are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


def _within(value: float, bounds) -> bool:
    low, high = bounds
    return (low is None or value > low) and (high is None or value < high)


def _say(bounds) -> str:
    low, high = bounds
    if high is None:
        return f"> {low:g}"
    return f"in ({low:g}, {high:g})"


def labels_from_outputs(outputs: np.ndarray, settings: Postprocess) -> np.ndarray:
    """Instance labels (uint16, 0 = background, 1..n) of one frame's outputs [H, W, C]."""
    outputs = np.asarray(outputs, np.float32)
    row = targets.get(settings.target)
    channels = row.channels
    if outputs.ndim != 3 or outputs.shape[-1] != channels:
        raise ValueError(f"target {settings.target!r} needs outputs [H, W, {channels}], got shape {outputs.shape}")
    mask_threshold, seed_threshold = settings.mask_threshold, settings.seed_threshold
    if row.seeds == "h_maxima":
        return split_touching(outputs[..., 0] > mask_threshold, seed_threshold, settings.min_size, settings.fill_holes)
    if row.seeds == "interior":
        mask = 1.0 - outputs[..., targets.BACKGROUND] > mask_threshold
        interior = outputs[..., targets.INTERIOR]
        if settings.seed_peaks:
            interior = ndimage.gaussian_filter(interior, PEAK_SMOOTHING)
            seeds = h_maxima(np.where(mask, interior, 0.0), seed_threshold)
        else:
            seeds = interior > seed_threshold
        return seeded_watershed(-interior, seeds, mask, settings.min_size, settings.fill_holes)
    cell, neighbour = outputs[..., 0], outputs[..., 1]
    mask, seeds = cell > mask_threshold, cell - neighbour > seed_threshold
    return seeded_watershed(_distance_surface(cell, neighbour, seeds, mask), seeds, mask, settings.min_size,
                            settings.fill_holes)


def _distance_surface(cell: np.ndarray, neighbour: np.ndarray, seeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The distance target's watershed surface: minus the cell distance in pixels, plus the neighbour distance.

    The cell distance is normalised per cell, so where a thin cell touches a big
    one its border lies higher than the big cell's and would flood into it. A
    first watershed on the cell distance finds each cell's inscribed radius,
    which turns the cell distance back into pixels; the neighbour distance (at
    most one pixel's worth) then pulls each split onto the contact line.
    """
    markers, _ = ndimage.label(seeds & mask)
    first = segmentation.watershed(-cell, markers, mask=mask)
    inside = (first > 0) & ~segmentation.find_boundaries(first, mode="inner")
    radius = ndimage.maximum(ndimage.distance_transform_edt(inside) + 1, first, np.arange(first.max() + 1))
    return neighbour - cell * np.asarray(radius, np.float32)[first]


def split_touching(mask: np.ndarray, seed_height: float = 2.0, min_size: int = 10,
                   fill_holes: bool = True) -> np.ndarray:
    """Instance labels of a binary mask, touching cells split by a distance-transform watershed."""
    mask = np.asarray(mask, bool)
    distance = ndimage.distance_transform_edt(mask)
    seeds = h_maxima(distance, seed_height) if seed_height > 0 else morphology.local_maxima(distance)
    return seeded_watershed(-distance, seeds.astype(bool), mask, min_size, fill_holes)


def h_maxima(distance: np.ndarray, height: float) -> np.ndarray:
    """`skimage.morphology.h_maxima(distance, height)` of an image that is 0 off the cells and positive on
    them (a distance transform, a masked probability): the same pixels, in a fraction of the time.

    skimage reconstructs the shifted image (`distance` - `height`, less a rounding
    margin) under `distance` over the whole frame, sorting every pixel twice,
    where cells often cover a fifth of it. Values pass from one 8-connected cell
    to another only through the 0 between them, so the cells are packed side by
    side, each in its box with a margin of 0, into a mosaic where, as in the
    frame, that 0 is all that joins them: its reconstruction is the frame's, cell
    for cell, on fewer pixels.
    """
    distance = np.asarray(distance, np.float64)
    cells, count = ndimage.label(distance > 0, structure=np.ones((3, 3), bool))
    if count < 2 or not 0 < height <= np.ptp(distance):
        return morphology.h_maxima(distance, height)
    # As skimage shifts: by `height` and a margin for rounding relative to each value.
    shifted = distance - height - 2 * np.finfo(np.float64).resolution * np.abs(distance)
    boxes = ndimage.find_objects(cells)
    # Shelf packing: boxes (with their margin) by decreasing height, left to right in rows.
    width = max(distance.shape[1], max(b[1].stop - b[1].start for b in boxes)) + 2
    places, x, y, row_height = [None] * count, 0, 0, 0
    for index in sorted(range(count), key=lambda i: boxes[i][0].start - boxes[i][0].stop):
        h, w = (s.stop - s.start + 2 for s in boxes[index])
        if x + w > width:
            x, y, row_height = 0, y + row_height, 0
        places[index] = (slice(y + 1, y + h - 1), slice(x + 1, x + w - 1))
        x, row_height = x + w, max(row_height, h)
    mosaic = np.zeros((y + row_height, width))
    marker = np.full(mosaic.shape, -height)  # the shifted 0
    owns = [cells[box] == index + 1 for index, box in enumerate(boxes)]
    for box, place, own in zip(boxes, places, owns):
        mosaic[place][own], marker[place][own] = distance[box][own], shifted[box][own]
    found = mosaic - morphology.reconstruction(marker, mosaic, method="dilation") >= height
    seeds = np.zeros(distance.shape, np.uint8)
    for box, place, own in zip(boxes, places, owns):
        seeds[box][own] = found[place][own]
    return seeds


class TooManyObjects(ValueError):
    """More objects than uint16 labels hold: the outputs of an untrained network, or thresholds that cut noise."""


def seeded_watershed(surface: np.ndarray, seeds: np.ndarray, mask: np.ndarray, min_size: int = 10,
                     fill_holes: bool = True) -> np.ndarray:
    """Instance labels (uint16) of a watershed of `surface` (lower = more central) from `seeds` inside `mask`.

    A mask component without a seed is kept as an object of its own, so a cell
    is never lost for lack of a seed; objects under `min_size` pixels are then
    dropped, holes filled, and the labels made 1..n.
    """
    mask = np.asarray(mask, bool)
    markers, count = ndimage.label(np.asarray(seeds, bool) & mask)
    labels = segmentation.watershed(surface, markers, mask=mask) if count else np.zeros(mask.shape, np.int64)
    unseeded, _ = ndimage.label(mask & (labels == 0))
    labels = np.where(unseeded > 0, unseeded + count, labels).astype(np.int64)
    if min_size:
        labels[np.bincount(labels.ravel())[labels] < min_size] = 0
    if fill_holes:
        labels = _fill_holes(labels)
    # The labels made 1..n in their order (as skimage's relabel_sequential, in a third of its time).
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    relabelled = (np.cumsum(present) * present)[labels]
    if not preprocess.labels_fit(relabelled):
        raise TooManyObjects(f"{relabelled.max()} objects do not fit uint16 labels")
    return relabelled.astype(np.uint16)


def _fill_holes(labels: np.ndarray) -> np.ndarray:
    """`labels` with every background region that borders one object only, and not the frame's edge, given to it.

    The candidates are the background regions (4-connected) that do not reach the frame's edge:
    `binary_fill_holes` of the cell mask finds them. Every 4-neighbour of such a region is a cell
    pixel, so the region is filled when the lowest and the highest of those labels agree.
    """
    holes, count = ndimage.label(ndimage.binary_fill_holes(labels > 0) & (labels == 0))
    if not count:
        return labels
    high = np.zeros(count + 1, np.int64)
    low = np.full(count + 1, np.iinfo(np.int64).max)
    height, width = labels.shape
    for rows, cols in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        # Pairs (hole pixel, its neighbour at +rows, +cols) inside the frame.
        here = (slice(max(-rows, 0), height - max(rows, 0)), slice(max(-cols, 0), width - max(cols, 0)))
        there = (slice(max(rows, 0), height - max(-rows, 0)), slice(max(cols, 0), width - max(-cols, 0)))
        inside = holes[here] > 0
        owners, neighbours = holes[here][inside], labels[there][inside]
        cells = neighbours > 0
        np.maximum.at(high, owners[cells], neighbours[cells])
        np.minimum.at(low, owners[cells], neighbours[cells])
    owner = np.where(high == low, high, 0)
    owner[0] = 0
    return np.where(holes > 0, owner[holes], labels)


def tune(outputs: list[np.ndarray], references: list[np.ndarray], target: str, grid: dict | None = None,
         progress=None) -> tuple[Postprocess, float]:
    """The settings with the best SEG over validation frames, and that SEG.

    Every (mask, seed) threshold pair of the grid is scored with the smallest
    nonzero minimum size, then each minimum size at the best pair; for
    `three_class`, the pairs of mask threshold and seed peak height as well.
    `grid` may replace the lists "mask_threshold", "seed_threshold",
    "seed_peak_height" and "min_size" (the default sizes are fractions of the
    references' median object area).
    `progress(done, total)` is called after each scored setting.

    SEG scores reference objects only, so it does not see false positives: among
    settings whose SEG agrees to three decimals, the one with the best object
    detection F1 (IoU > 0.5) wins, and then the one scored first.
    """
    row = targets.get(target)
    if not outputs or len(outputs) != len(references):
        raise ValueError(f"tune needs as many reference frames as outputs, got {len(outputs)} and {len(references)}")
    for output, reference in zip(outputs, references):
        if np.shape(output)[:2] != np.shape(reference):
            raise ValueError(f"outputs of shape {np.shape(output)} do not match a reference of {np.shape(reference)}")
    keys = ("mask_threshold", "seed_threshold", "seed_peak_height", "min_size")
    unknown = set(grid or {}) - set(keys)
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; expected {', '.join(keys)}")
    areas = np.concatenate([np.unique(r[r > 0], return_counts=True)[1] for r in map(np.asarray, references)])
    median = float(np.median(areas)) if areas.size else 0.0
    grid = {"mask_threshold": row.mask_grid, "seed_threshold": row.seed_grid, "seed_peak_height": row.peak_grid,
            "min_size": sorted({round(f * median) for f in MIN_SIZE_FRACTIONS}), **(grid or {})}
    if grid["seed_peak_height"]:
        Postprocess(target, seed_peaks=True)  # refuses, before any scoring, a target without peak seeds
    seeds = [(seed, False) for seed in grid["seed_threshold"]] + [(peak, True) for peak in grid["seed_peak_height"]]
    if not (grid["mask_threshold"] and grid["min_size"] and seeds):
        raise ValueError("the grid needs a mask threshold, a min size, and a seed threshold or seed peak height")
    fixed = min((size for size in grid["min_size"] if size > 0), default=min(grid["min_size"]))
    total = len(grid["mask_threshold"]) * len(seeds) + len(grid["min_size"]) - 1
    found: dict[Postprocess, tuple[float, float]] = {}  # (SEG, F1)

    def rank(settings: Postprocess) -> tuple[float, float]:
        seg, f1 = found[settings]
        return round(seg, 3), f1

    def best(candidates) -> Postprocess:
        chosen = None
        for settings in candidates:
            if settings not in found:
                try:
                    predictions = [labels_from_outputs(output, settings) for output in outputs]
                    found[settings] = (scores.seg_score(references, predictions),
                                       scores.detection_scores(references, predictions)["f1"])
                except TooManyObjects:  # noise cut into pieces: no cell found whole
                    found[settings] = (0.0, 0.0)
                if progress:
                    progress(len(found), total)
            if chosen is None or rank(settings) > rank(chosen):
                chosen = settings
        return chosen

    pair = best(Postprocess(target, mask, seed, fixed, seed_peaks=peaks)
                for mask, (seed, peaks) in itertools.product(grid["mask_threshold"], seeds))
    chosen = best(dataclasses.replace(pair, min_size=size) for size in grid["min_size"])
    return chosen, found[chosen][0]
