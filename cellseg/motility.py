"""Per-track motility from the cells' centroids over time (numpy): how far and how fast each cell moves.

A track here is one cell from its first frame to its last (a cell bridged over a
missing frame is one track, though the challenge's format gives it two labels);
its daughters are tracks of their own with it as parent. Positions are the
centroids of the cell's mask in the frames it was seen; with `pixel_size` (µm)
and `frame_interval` (minutes) lengths, speeds and times are physical, in pixels
and frames otherwise, and the column names say which.

Each track's generation counts divisions from its founder (a track with no
parent: 0; a daughter: her mother's + 1). Its cell cycle, the time between the
division that made it and its own, from its first frame to its daughters'
first, is given only for a track that both starts and ends by division.
"""

from __future__ import annotations

import collections
import math


def units(pixel_size: float | None, frame_interval: float | None) -> tuple[str, str]:
    """(length unit, speed unit) as they appear in column names."""
    length = "um" if pixel_size else "px"
    return length, f"{length}_per_{'min' if frame_interval else 'frame'}"


def columns(pixel_size: float | None = None, frame_interval: float | None = None) -> list[str]:
    length, speed = units(pixel_size, frame_interval)
    return ["track", "parent", "generation", "first_frame", "last_frame", "frames", f"path_length_{length}",
            f"net_displacement_{length}", f"mean_speed_{speed}", f"max_speed_{speed}", "straightness",
            f"mean_area_{length}2", "divides", cycle_column(frame_interval)]


def cycle_column(frame_interval: float | None) -> str:
    """The cell cycle's column: in minutes with a frame interval, else in frames."""
    return f"cell_cycle_{'min' if frame_interval else 'frames'}"


def generations(parents: dict[int, int]) -> dict[int, int]:
    """cell -> divisions from its founder (0 for a cell whose parent is not among `parents`)."""
    found: dict[int, int] = {}
    for cell in parents:
        chain = []
        while cell in parents and cell not in found:
            chain.append(cell)
            cell = parents[cell]
        depth = found.get(cell, -1)  # where the walk stopped: a cell already counted, or above a founder
        for member in reversed(chain):
            depth += 1
            found[member] = depth
    return found


def tracks_table(observations, cell_of: dict[int, int], parents: dict[int, int], divided: set[int],
                 pixel_size: float | None = None, frame_interval: float | None = None) -> list[dict]:
    """One row per cell (`columns`), from observations (frame, label, centroid y, centroid x, area in pixels).

    `cell_of` maps each label to its cell (the first label of a cell bridged over gaps); `parents` a
    cell's label to its parent cell's (0: none); `divided` holds the labels that divided.
    """
    scale, interval = pixel_size or 1.0, frame_interval or 1.0
    seen = collections.defaultdict(list)
    for frame, label, y, x, area in observations:
        seen[cell_of[label]].append((frame, y * scale, x * scale, area * scale**2))
    length, speed = units(pixel_size, frame_interval)
    dividing = {cell_of[label] for label in divided}
    generation = generations({cell: parents.get(cell, 0) for cell in seen})
    daughters_from = {}  # a dividing cell -> its daughters' first frame
    for cell in seen:
        mother = parents.get(cell, 0)
        if mother in dividing:
            daughters_from[mother] = min(daughters_from.get(mother, math.inf), min(seen[cell])[0])
    rows = []
    for cell in sorted(seen):
        points = sorted(seen[cell])
        steps = [(math.hypot(b[1] - a[1], b[2] - a[2]), (b[0] - a[0]) * interval) for a, b in zip(points, points[1:])]
        path = sum(distance for distance, _ in steps)
        net = math.hypot(points[-1][1] - points[0][1], points[-1][2] - points[0][2])
        duration = (points[-1][0] - points[0][0]) * interval
        born_by_division = parents.get(cell, 0) in dividing
        cycle = (daughters_from[cell] - points[0][0]) * interval if born_by_division and cell in daughters_from \
            else ""
        rows.append({
            "track": cell, "parent": parents.get(cell, 0), "generation": generation[cell],
            "first_frame": points[0][0], "last_frame": points[-1][0],
            "frames": len(points), f"path_length_{length}": path, f"net_displacement_{length}": net,
            f"mean_speed_{speed}": path / duration if duration else 0.0,
            f"max_speed_{speed}": max((d / t for d, t in steps), default=0.0),
            "straightness": net / path if path else 1.0,
            f"mean_area_{length}2": sum(p[3] for p in points) / len(points),
            "divides": int(cell in dividing), cycle_column(frame_interval): cycle,
        })
    return rows
