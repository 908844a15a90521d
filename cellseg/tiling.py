"""Overlap-tile prediction of frames of any size with a model of one fixed input size (U-Net paper, Fig. 2).

The frame is mirror-padded by half the overlap on each side (and up to a whole
number of strides), cut into fixed-size tiles that overlap by `overlap` pixels,
predicted in batches, and each tile's central `tile - overlap` square is kept.
When half the overlap covers the network's receptive field, the result equals
a prediction of the whole mirrored frame at once, without seams, while the
model keeps one fixed input shape. numpy only: the model is any function from
tiles to outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

DEFAULT_TILE, DEFAULT_OVERLAP = 256, 64


def tile_layout(height: int, width: int, tile: int, overlap: int):
    """(stride, tiles down, tiles across, padding per side as ((top, bottom), (left, right)))."""
    if overlap % 2 or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be even and smaller than the tile ({tile}), got {overlap}")
    stride, margin = tile - overlap, overlap // 2
    down, across = math.ceil(height / stride), math.ceil(width / stride)
    padding = ((margin, down * stride - height + margin), (margin, across * stride - width + margin))
    return stride, down, across, padding


def predict_outputs(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int,
    overlap: int,
    batch_size: int = 4,
) -> np.ndarray:
    """Per-pixel network outputs [H, W, C] of a 2-D image of any size.

    `predict_batch` maps tiles [n, tile, tile, 1] float32 to outputs [n, tile,
    tile, C] (a Keras model's `predict_on_batch`, or an exported signature).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape
    stride, down, across, padding = tile_layout(height, width, tile, overlap)
    # numpy's symmetric padding mirrors again and again when the pad exceeds the frame.
    padded = np.pad(image, padding, mode="symmetric")
    corners = [(row * stride, col * stride) for row in range(down) for col in range(across)]
    margin = overlap // 2
    result = None
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = np.stack([padded[y : y + tile, x : x + tile] for y, x in chunk])[..., None]
        outputs = np.asarray(predict_batch(tiles), np.float32)
        if result is None:
            result = np.zeros((down * stride, across * stride, outputs.shape[-1]), np.float32)
        for (y, x), output in zip(chunk, outputs):
            result[y : y + stride, x : x + stride] = output[margin : margin + stride, margin : margin + stride]
    return result[:height, :width]


def averaged_over_symmetries(predict_batch: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`predict_batch` made test-time augmented: the mean of its outputs over the 8 flips and quarter turns
    of square tiles, each turned back (8 times the cost)."""

    def predict(tiles: np.ndarray) -> np.ndarray:
        total = None
        for turns in range(4):
            for flip in (False, True):
                seen = np.rot90(tiles, turns, axes=(1, 2))
                seen = seen[:, :, ::-1] if flip else seen
                outputs = np.asarray(predict_batch(np.ascontiguousarray(seen)), np.float32)
                outputs = outputs[:, :, ::-1] if flip else outputs
                outputs = np.rot90(outputs, -turns, axes=(1, 2))
                total = outputs if total is None else total + outputs
        return total / 8

    return predict
