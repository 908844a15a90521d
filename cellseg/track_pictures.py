"""Pictures of a tracked sequence (matplotlib, Agg): trajectories over its last frame, and its lineage tree.

Each founder cell gets a hue; its descendants take hues near it, so a family
reads as one colour family in both pictures. The lineage tree is laid out as a
dendrogram: time runs left to right (frames, or minutes with a frame interval),
each cell is a horizontal line from its first to its last frame, a mother sits
midway between her daughters, a dot marks each division and names the track
that divided; the figure grows in height with the number of cells, so that 300
tracks stay readable. Trajectories are drawn at the frame's own pixel size,
with a scale bar when the pixel size is known. Both are written as PNG.
"""

from __future__ import annotations

import collections
import colorsys

import numpy as np
from matplotlib import patches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 150
ROW_INCHES = 0.11  # height of one leaf of the lineage tree
LONG_SIDE = 1600  # pixels: trajectories of a smaller frame are drawn larger
SCALE_BARS_UM = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def colours(cells: dict[int, int]) -> dict[int, tuple[float, float, float]]:
    """cell -> RGB in 0..1: founders spread round the hue circle, daughters near their parent's hue.

    `cells` maps each cell to its parent cell (0: a founder).
    """
    founders = sorted(cell for cell, parent in cells.items() if not parent or parent not in cells)
    hue = {cell: index / max(len(founders), 1) for index, cell in enumerate(founders)}
    children = collections.defaultdict(list)
    for cell, parent in sorted(cells.items()):
        if parent and parent in cells:
            children[parent].append(cell)
    spread = 0.5 / max(len(founders), 1)
    queue = collections.deque(founders)
    while queue:
        cell = queue.popleft()
        for order, child in enumerate(children[cell]):
            hue[child] = (hue[cell] + (order - 0.5) * spread * 0.5) % 1.0
            queue.append(child)
    return {cell: colorsys.hsv_to_rgb(hue.get(cell, 0.0), 0.85, 0.9) for cell in cells}


def tree_rows(cells: dict[int, int]) -> dict[int, float]:
    """cell -> its row in the lineage tree: leaves on consecutive rows, family by family (founders in
    order), a mother midway between her first and last daughter."""
    children = collections.defaultdict(list)
    for cell, parent in sorted(cells.items()):
        children[parent if parent in cells else 0].append(cell)
    rows: dict[int, float] = {}
    leaves = 0
    # Depth first without recursion (lineages may be deep): a cell is placed once its daughters are.
    for founder in children[0]:
        stack = [(founder, False)]
        while stack:
            cell, expanded = stack.pop()
            if not children[cell]:
                rows[cell] = leaves
                leaves += 1
            elif expanded:
                rows[cell] = (rows[children[cell][0]] + rows[children[cell][-1]]) / 2
            else:
                stack.append((cell, True))
                stack.extend((child, False) for child in reversed(children[cell]))
    return rows


def _save(figure: Figure, path: str) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)


def save_lineage_tree(path: str, spans: dict[int, tuple[int, int]], cells: dict[int, int],
                      divided: set[int] = frozenset(), frame_interval: float | None = None) -> None:
    """The lineage tree as a PNG at `path`: `spans` cell -> (first, last frame), `cells` cell -> parent
    (0: none), `divided` the cells that divided (marked and named); time in minutes with `frame_interval`."""
    rows = tree_rows(cells)
    scale = frame_interval or 1.0
    leaves = max(1, int(max(rows.values(), default=0)) + 1)
    last = max((end for _, end in spans.values()), default=0)
    top, bottom = 0.8, 0.55  # inches for the title and time axis above, the time axis below
    height = max(3.0, ROW_INCHES * leaves + top + bottom)
    figure = Figure(figsize=(min(24.0, max(6.0, 0.25 * last + 3)), height))
    axes = figure.add_axes((0.05, bottom / height, 0.92, 1 - (top + bottom) / height))
    palette = colours(cells)
    width = 1.6 if leaves < 150 else 1.0
    for cell, (first, end) in spans.items():
        y = rows[cell]
        # A cell lives from its first frame to its last; the line reaches half a frame on each side.
        axes.plot([(first - 0.5) * scale, (end + 0.5) * scale], [y, y], color=palette[cell], lw=width,
                  solid_capstyle="butt")
        parent = cells.get(cell)
        if parent in spans:
            x = (spans[parent][1] + 0.5) * scale
            axes.plot([x, x], [rows[parent], y], color="0.45", lw=0.6)
    font = 6 if leaves > 60 else 8
    for cell in sorted(divided & set(spans)):
        x, y = (spans[cell][1] + 0.5) * scale, rows[cell]
        axes.plot([x], [y], "o", color="black", ms=2.5 if leaves > 60 else 4)
        axes.annotate(str(cell), (x, y), xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom",
                      fontsize=font, color="0.15")
    axes.set_ylim(leaves - 0.5, -0.5)
    axes.set_xlim(-0.5 * scale, (last + 0.5) * scale)
    axes.set_yticks([])
    for side in ("left", "right", "top"):
        axes.spines[side].set_visible(False)
    axes.set_xlabel("time (min)" if frame_interval else "frame")
    axes.xaxis.set_ticks_position("both")
    axes.tick_params(axis="x", top=True, labeltop=True)
    founders = sum(1 for cell, parent in cells.items() if parent not in spans)
    axes.set_title(f"{len(spans)} cells from {founders} founders, {len(divided & set(spans))} divisions "
                   "(dots: divisions, named by the track that divided)", fontsize=9, pad=20)
    _save(figure, path)


def scale_bar_um(width_um: float) -> float:
    """A round length near a fifth of `width_um` for the scale bar."""
    return max([length for length in SCALE_BARS_UM if length <= width_um / 5] or [SCALE_BARS_UM[0]])


def save_trajectories(path: str, frame: np.ndarray, paths: dict[int, list[tuple[float, float]]],
                      cells: dict[int, int], pixel_size: float | None = None) -> None:
    """`frame` (2-D grey, the sequence's last) as a PNG at `path` with each cell's path (centroids (row,
    col) in frame order) in its colour, a dot where it was last seen, and a line from a parent's end to
    each daughter's start; a scale bar with `pixel_size` (um). One frame pixel is one picture pixel at
    least (more up to `LONG_SIDE`), so the paths of a crowded frame stay apart."""
    frame = np.asarray(frame)
    height, width = frame.shape
    zoom = max(1.0, LONG_SIDE / max(height, width))  # paths of crowded cells need room
    figure = Figure(figsize=(width * zoom / DPI, height * zoom / DPI))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(frame, cmap="gray", interpolation="nearest", vmin=0, vmax=max(int(frame.max()), 1) * 1.6)
    palette = colours(cells)
    for cell, points in paths.items():
        parent = cells.get(cell)
        if parent in paths:
            points = [paths[parent][-1], *points]
        ys, xs = zip(*points)
        axes.plot(xs, ys, color=palette[cell], lw=0.9)
        axes.plot(xs[-1:], ys[-1:], "o", color=palette[cell], ms=2.2)
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    axes.axis("off")
    if pixel_size:
        length = scale_bar_um(width * pixel_size)
        bar = length / pixel_size
        margin = 0.04 * width
        left, top = width - margin - bar, height - margin
        axes.add_patch(patches.Rectangle((left, top - 0.006 * height), bar, max(2.0, 0.008 * height),
                                         color="white"))
        label = f"{length:g} µm"
        axes.text(left + bar / 2, top - 0.015 * height, label, color="white", ha="center", va="bottom",
                  fontsize=max(7.0, min(14.0, 0.012 * height * zoom)))
    axes.text(0.01 * width, 0.02 * height, f"{len(paths)} cells", color="white", va="top", fontsize=9)
    _save(figure, path)

