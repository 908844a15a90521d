"""Prediction of frames of any size with a model of fixed input shapes (U-Net paper, Fig. 2).

A frame is predicted whole when it fits the memory budget (`MAX_TILE_PIXELS`):
mirror-padded up to a multiple of the network's stride, one pass, no seams.
Larger frames are mirror-padded by half the overlap on each side (and up to a
whole number of strides), cut into tiles that overlap by `overlap` pixels,
predicted in batches, and each tile's central part is kept. When half the
overlap covers the network's receptive field and the tile and overlap are
multiples of the stride, the result equals one pass over the whole padded frame.
Frames of one shape are batched together. numpy only: the model is any
function from tiles [n, h, w, 1] to outputs [n, h, w, C].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# An export has one fixed tile size: it is predicted with these unless told otherwise.
DEFAULT_TILE, DEFAULT_OVERLAP = 256, 64
# Pixels per network call (tiles x their pixels): the whole 2048 x 2048 frame at once. A U-Net of base
# 16 and depth 4 holds about 1.5 GB of activations for it in float32 (benchmarks/inference.py).
MAX_TILE_PIXELS = 2048 * 2048


def pair(tile) -> tuple[int, int]:
    """(height, width) of a tile given as a side or as (height, width)."""
    return (tile, tile) if isinstance(tile, (int, np.integer)) else (int(tile[0]), int(tile[1]))


def tiles_per_call(tile, max_pixels: int = MAX_TILE_PIXELS) -> int:
    """How many tiles one network call takes under a budget of `max_pixels` (at least one)."""
    tile_h, tile_w = pair(tile)
    return max(1, max_pixels // (tile_h * tile_w))


def choose(height: int, width: int, multiple: int, halo: int,
           max_pixels: int = MAX_TILE_PIXELS) -> tuple[tuple[int, int], int]:
    """(tile (height, width), overlap) for a frame: the whole frame, padded up to a `multiple`, when it
    holds at most `max_pixels`; else the largest square tile (a `multiple`) under `max_pixels`, with an
    overlap of twice `halo` (the network's receptive radius) rounded up to a `multiple`."""
    whole = (math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple)
    if whole[0] * whole[1] <= max_pixels:
        return whole, 0
    overlap = overlap_for(multiple, halo)
    side = max(math.isqrt(max_pixels) // multiple * multiple, overlap + multiple)
    return (side, side), overlap


def overlap_for(multiple: int, halo: int) -> int:
    """The overlap of tiles whose kept parts see all they need: twice `halo` rounded up to a `multiple`."""
    return 2 * math.ceil(halo / multiple) * multiple


def tile_layout(height: int, width: int, tile, overlap: int):
    """(stride (rows, cols), tiles down, tiles across, padding per side as ((top, bottom), (left, right)))."""
    tile_h, tile_w = pair(tile)
    if overlap % 2 or not 0 <= overlap < min(tile_h, tile_w):
        raise ValueError(f"overlap must be even and smaller than the tile ({tile_h} x {tile_w}), got {overlap}")
    stride_h, stride_w, margin = tile_h - overlap, tile_w - overlap, overlap // 2
    down, across = math.ceil(height / stride_h), math.ceil(width / stride_w)
    padding = ((margin, down * stride_h - height + margin), (margin, across * stride_w - width + margin))
    return (stride_h, stride_w), down, across, padding


def predict_frames(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    images: Sequence[np.ndarray],
    tile,
    overlap: int,
    batch_size: int = 4,
) -> list[np.ndarray]:
    """Per-pixel network outputs [H, W, C] of 2-D images of one shape, their tiles predicted together
    in batches of `batch_size` (a Keras model's `predict_on_batch`, or an exported signature)."""
    tile_h, tile_w = pair(tile)
    height, width = np.shape(images[0])
    (stride_h, stride_w), down, across, padding = tile_layout(height, width, (tile_h, tile_w), overlap)
    # numpy's symmetric padding mirrors again and again when the pad exceeds the frame.
    padded = [np.pad(np.asarray(image, np.float32), padding, mode="symmetric") for image in images]
    corners = [(index, row * stride_h, col * stride_w)
               for index in range(len(images)) for row in range(down) for col in range(across)]
    margin = overlap // 2
    results = None
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = np.stack([padded[i][y : y + tile_h, x : x + tile_w] for i, y, x in chunk])[..., None]
        outputs = np.asarray(predict_batch(tiles), np.float32)
        if results is None:
            results = [np.zeros((down * stride_h, across * stride_w, outputs.shape[-1]), np.float32) for _ in images]
        for (i, y, x), output in zip(chunk, outputs):
            results[i][y : y + stride_h, x : x + stride_w] = output[margin : margin + stride_h,
                                                                    margin : margin + stride_w]
    return [result[:height, :width] for result in results]


def predict_outputs(predict_batch: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile, overlap: int,
                    batch_size: int = 4) -> np.ndarray:
    """Per-pixel network outputs [H, W, C] of one 2-D image of any size (see `predict_frames`)."""
    return predict_frames(predict_batch, [image], tile, overlap, batch_size)[0]


def averaged_over_symmetries(predict_batch: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`predict_batch` made test-time augmented: the mean of its outputs over the 8 flips and quarter turns
    of the tiles, each turned back (8 times the cost; quarter turns of an oblong tile swap its sides)."""

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
