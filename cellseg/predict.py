"""Whole-frame prediction of any size by the overlap-tile strategy (U-Net paper, Fig. 2).

The frame is mirror-padded by half the overlap on each side (and up to a whole
number of strides), cut into fixed-size tiles that overlap by `overlap` pixels,
predicted in batches, and each tile's central `tile - overlap` square is kept.
When half the overlap covers the network's receptive field, the result equals
a prediction of the whole mirrored frame at once, without seams, while the
model keeps one fixed input shape. The command line (`cellseg-predict`) comes
with the instance and result-writing stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def tile_layout(height: int, width: int, tile: int, overlap: int):
    """(stride, tiles down, tiles across, padding per side as ((top, bottom), (left, right)))."""
    if overlap % 2 or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be even and smaller than the tile ({tile}), got {overlap}")
    stride, margin = tile - overlap, overlap // 2
    down, across = math.ceil(height / stride), math.ceil(width / stride)
    padding = ((margin, down * stride - height + margin), (margin, across * stride - width + margin))
    return stride, down, across, padding


def predict_probabilities(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    tile: int,
    overlap: int,
    batch_size: int = 4,
) -> np.ndarray:
    """Per-pixel probabilities [H, W] of a 2-D image of any size.

    `predict_batch` maps tiles [n, tile, tile, 1] float32 to probabilities of the
    same shape (a Keras model's `predict_on_batch`, or an exported signature).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape
    stride, down, across, padding = tile_layout(height, width, tile, overlap)
    # numpy's symmetric padding mirrors again and again when the pad exceeds the frame.
    padded = np.pad(image, padding, mode="symmetric")
    corners = [(row * stride, col * stride) for row in range(down) for col in range(across)]
    margin = overlap // 2
    result = np.zeros((down * stride, across * stride), np.float32)
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = np.stack([padded[y : y + tile, x : x + tile] for y, x in chunk])[..., None]
        probabilities = np.asarray(predict_batch(tiles))[..., 0]
        for (y, x), probability in zip(chunk, probabilities):
            result[y : y + stride, x : x + stride] = probability[margin : margin + stride, margin : margin + stride]
    return result[:height, :width]
