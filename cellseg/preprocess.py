"""Per-frame preprocessing in numpy: intensity stretch, class weights, border weights, the label range.

The converter runs these once per frame; prediction calls the same functions, so
training and inference see identically normalised images.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DEFAULT_PERCENTILES = (2.0, 98.0)
DEFAULT_W0 = 10.0
DEFAULT_SIGMA = 5.0


def percentile_stretch(
    image: np.ndarray, low: float = DEFAULT_PERCENTILES[0], high: float = DEFAULT_PERCENTILES[1]
) -> tuple[np.ndarray, tuple[float, float]]:
    """Map the `low`..`high` percentile range of `image` to [0, 1] (clipped), float32.

    Returns the stretched image and the raw intensities at the two percentiles.
    Percentiles, rather than the dtype's range, adapt to each frame's exposure and
    ignore a few hot or dead pixels. A flat image maps to zeros.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    values = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        return np.zeros(values.shape, np.float32), (float(lo), float(hi))
    stretched = np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return stretched, (float(lo), float(hi))


MAX_LABEL = np.iinfo(np.uint16).max  # CTC masks are uint16: 65535 objects per frame at most


def labels_fit(labels: np.ndarray) -> bool:
    """Whether instance labels fit a CTC mask: integers in 0..MAX_LABEL."""
    labels = np.asarray(labels)
    return not labels.size or (labels.min() >= 0 and labels.max() <= MAX_LABEL)


# How far the class weights go towards balance: 1 is fully balanced (each class weighs the same in
# the loss), 0 is unweighted. Fully balanced weights made thin boundary classes weigh 30-40 times the
# background, and networks painted cells too fat (benchmarks/quality.py).
CLASS_WEIGHT_POWER = 0.5


def softened_weights(fractions, power: float = CLASS_WEIGHT_POWER) -> tuple[float, ...]:
    """Per-class weights proportional to `fraction ** -power`, scaled so the mean weight over all pixels is 1.

    `power` 1 balances the classes (each of K weighs 1/K of the loss: a frame that is 7 % cells
    gets 0.5 / 0.07 = 7.1 on cells); 0.5 (the default) takes the square root of those, rescaled.
    """
    fractions = [max(float(f), 1e-6) for f in fractions]
    raw = [f**-power for f in fractions]
    scale = sum(f * r for f, r in zip(fractions, raw))
    return tuple(r / scale for r in raw)


def border_weight_map(
    labels: np.ndarray,
    w0: float = DEFAULT_W0,
    sigma: float = DEFAULT_SIGMA,
    class_weights: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """The U-Net paper's weight map `w = w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`, float32.

    `d1` and `d2` are the Euclidean distances (in pixels, 1 next to a cell) from a
    background pixel to the nearest and second nearest cell; `w_c` is
    `class_weights[0]` on background and `class_weights[1]` on cells. The border
    term applies to background pixels only: it is there to make the network learn
    the thin gaps that separate touching cells.
    """
    labels = np.asarray(labels)
    background_weight, foreground_weight = class_weights
    weights = np.where(labels > 0, foreground_weight, background_weight).astype(np.float32)
    if w0 == 0:
        return weights
    # Beyond this distance the term is below 1e-6 * w0.
    reach = int(math.ceil(sigma * math.sqrt(2.0 * math.log(1e6))))
    nearest, second = nearest_cells(labels, reach)
    border = w0 * np.exp(-((nearest + second) ** 2) / (2.0 * sigma**2))
    weights += np.where(labels == 0, border, 0.0).astype(np.float32)
    return weights


def nearest_cells(labels: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the Euclidean distances to the nearest and the second nearest cell (0 inside a cell).

    Each cell's distance map is computed only within `reach` pixels of it, so
    the cost grows with the number of cells, not cells times frame size;
    distances beyond the reach are infinite.
    """
    labels = np.asarray(labels, np.int64)
    nearest = np.full(labels.shape, np.inf)
    second = np.full(labels.shape, np.inf)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        window = tuple(slice(max(s.start - reach, 0), min(s.stop + reach, size)) for s, size in zip(box, labels.shape))
        distance = ndimage.distance_transform_edt(labels[window] != label)
        near, sec = nearest[window], second[window]
        second[window] = np.minimum(sec, np.maximum(near, distance))
        nearest[window] = np.minimum(near, distance)
    return nearest, second


def foreground_fraction(labels: np.ndarray) -> float:
    """Fraction of pixels that belong to a cell."""
    labels = np.asarray(labels)
    return float(np.count_nonzero(labels)) / labels.size if labels.size else 0.0
