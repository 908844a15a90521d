"""Pictures of a tracked sequence (numpy and Pillow): trajectories over its last frame, and its lineage tree.

Each cell gets a hue; its daughters take hues near it, so a family reads as one
colour family. Both pictures are PNG-ready RGB uint8 arrays.
"""

from __future__ import annotations

import colorsys
import collections

import numpy as np
from PIL import Image, ImageDraw


def colours(cells: dict[int, int]) -> dict[int, tuple[int, int, int]]:
    """cell -> RGB: founders spread round the hue circle, daughters near their parent's hue.

    `cells` maps each cell to its parent cell (0: a founder).
    """
    founders = sorted(cell for cell, parent in cells.items() if not parent or parent not in cells)
    hue = {cell: index / max(len(founders), 1) for index, cell in enumerate(founders)}
    children = collections.defaultdict(list)
    for cell, parent in sorted(cells.items()):
        if parent and parent in cells:
            children[parent].append(cell)
    spread = 0.5 / max(len(founders), 1)
    queue = list(founders)
    while queue:
        cell = queue.pop(0)
        for order, child in enumerate(children[cell]):
            hue[child] = (hue[cell] + (order - 0.5) * spread * 0.5) % 1.0
            queue.append(child)
    return {cell: tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue.get(cell, 0.0), 0.85, 1.0)) for cell in cells}


def trajectories(frame: np.ndarray, paths: dict[int, list[tuple[float, float]]],
                 cells: dict[int, int]) -> np.ndarray:
    """`frame` (uint8 grey, the sequence's last) with each cell's path (centroids (row, col) in frame order)
    drawn in its colour, a dot where it was last seen, and a line from a parent's end to each daughter's start."""
    picture = Image.fromarray(np.repeat(np.asarray(frame, np.uint8)[..., None], 3, axis=-1))
    draw = ImageDraw.Draw(picture)
    palette = colours(cells)
    for cell, points in paths.items():
        parent = cells.get(cell)
        if parent in paths:
            points = [paths[parent][-1], *points]
        xy = [(x, y) for y, x in points]
        if len(xy) > 1:
            draw.line(xy, fill=palette[cell], width=1)
        x, y = xy[-1]
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=palette[cell])
    return np.asarray(picture)


def lineage_tree(spans: dict[int, tuple[int, int]], cells: dict[int, int], frames: int,
                 row_height: int = 8, frame_width: int = 6) -> np.ndarray:
    """The lineage as a picture: time runs left to right, one row per cell (a daughter just below its
    parent's family), a vertical line joining a parent's end to its daughters."""
    children = collections.defaultdict(list)
    for cell, parent in sorted(cells.items()):
        children[parent if parent in cells else 0].append(cell)
    order: list[int] = []

    def visit(cell: int) -> None:
        order.append(cell)
        for child in children[cell]:
            visit(child)

    for founder in children[0]:
        visit(founder)
    row = {cell: index for index, cell in enumerate(order)}
    margin = 10
    width, height = margin * 2 + frames * frame_width, margin * 2 + max(len(order), 1) * row_height
    picture = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    palette = colours(cells)
    for cell in order:
        first, last = spans[cell]
        y = margin + row[cell] * row_height + row_height // 2
        draw.line((margin + first * frame_width, y, margin + last * frame_width + frame_width // 2, y),
                  fill=palette[cell], width=max(1, row_height // 3))
        parent = cells.get(cell)
        if parent in row:
            x = margin + first * frame_width
            draw.line((x, margin + row[parent] * row_height + row_height // 2, x, y), fill=(90, 90, 90), width=1)
    return np.asarray(picture)
