"""Per-track motility from the cells' centroids over time (numpy): how far and how fast each cell moves.

A track here is one cell from its first frame to its last (a cell bridged over a
missing frame is one track, though the challenge's format gives it two labels);
its daughters are tracks of their own with it as parent. Positions are the
centroids of the cell's mask in the frames it was seen; with `pixel_size` (µm)
and `frame_interval` (minutes) lengths and speeds are physical, in pixels and
frames otherwise, and the column names say which.
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
    return ["track", "parent", "first_frame", "last_frame", "frames", f"path_length_{length}",
            f"net_displacement_{length}", f"mean_speed_{speed}", f"max_speed_{speed}", "straightness",
            f"mean_area_{length}2", "divides"]


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
    rows = []
    for cell in sorted(seen):
        points = sorted(seen[cell])
        steps = [(math.hypot(b[1] - a[1], b[2] - a[2]), (b[0] - a[0]) * interval) for a, b in zip(points, points[1:])]
        path = sum(distance for distance, _ in steps)
        net = math.hypot(points[-1][1] - points[0][1], points[-1][2] - points[0][2])
        duration = (points[-1][0] - points[0][0]) * interval
        rows.append({
            "track": cell, "parent": parents.get(cell, 0), "first_frame": points[0][0], "last_frame": points[-1][0],
            "frames": len(points), f"path_length_{length}": path, f"net_displacement_{length}": net,
            f"mean_speed_{speed}": path / duration if duration else 0.0,
            f"max_speed_{speed}": max((d / t for d, t in steps), default=0.0),
            "straightness": net / path if path else 1.0,
            f"mean_area_{length}2": sum(p[3] for p in points) / len(points),
            "divides": int(cell in dividing),
        })
    return rows
