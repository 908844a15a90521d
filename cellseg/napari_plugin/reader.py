"""cellseg's results as napari layers: the masks as Labels, `res_track.txt` as napari's Tracks with the lineage.

`get_reader(path)` is the plugin's reader (napari's File > Open, or
`napari 02_RES`): a CTC result folder (`maskTTT.tif`, and `res_track.txt` when
tracked), a folder of them (`cellseg-predict`'s --output_dir, whose
`<sequence>_RES/` hold them) or a run folder (its `predictions/`). `result_layers`
is what the widget shows after a run too. Everything here is numpy: no Qt.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from cellseg import ctc, linking, tiff


def tracks_data(masks: np.ndarray, rows: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, dict]:
    """napari's tracks of labelled frames (T, Y, X) whose labels are tracks: data rows (track, t, y, x), one per
    cell and frame at the cell's centroid, sorted by track and time, and the lineage graph {child: [parent]}
    of the track rows (label, first, last, parent) whose parent has cells."""
    data = []
    for t, frame in enumerate(masks):
        objects = linking.measure(frame)  # the centroids tracking links by
        data += [(label, t, y, x) for label, (y, x) in zip(objects.labels.tolist(), objects.centroid.tolist())]
    data = np.array(sorted(data), np.float64).reshape(-1, 4)
    present = set(data[:, 0].astype(int).tolist())
    graph = {label: [parent] for label, _, _, parent in rows if parent and label in present and parent in present}
    return data, graph


def result_layers(folder: str, name: str = "") -> list[tuple]:
    """napari layer data of one CTC result folder: (masks, {"name": ...}, "labels") and, when it holds
    `res_track.txt`, (tracks, {"name", "graph"}, "tracks"). ValueError naming the folder when it holds no masks."""
    found = ctc.masks_by_index(folder)
    if not found:
        raise ValueError(f"{folder}: no maskTTT.tif files (not a CTC result folder)")
    name = name or os.path.basename(os.path.normpath(folder))
    frames = range(max(found) + 1)
    shape = tiff.read(found[min(found)]).shape
    masks = np.stack([tiff.read(found[t]) if t in found else np.zeros(shape, np.uint16) for t in frames])
    layers = [(masks, {"name": name}, "labels")]
    lineage = os.path.join(folder, ctc.TRACKS)
    if os.path.isfile(lineage):
        data, graph = tracks_data(masks, ctc.read_tracks(lineage, last_frame=len(masks) - 1))
        if len(data):
            layers.append((data, {"name": f"{name} tracks", "graph": graph, "tail_length": 10}, "tracks"))
    return layers


def result_folders(path: str) -> list[str]:
    """The CTC result folders `path` is or holds: itself, its `*_RES/` (predictions) or `predictions/*_RES/`
    (a run folder); [] when none."""
    if not os.path.isdir(path):
        return []
    if ctc.masks_by_index(path):
        return [path]
    for pattern in ("*_RES", os.path.join("predictions", "*_RES")):
        found = sorted(folder for folder in glob.glob(os.path.join(path, pattern)) if ctc.masks_by_index(folder))
        if found:
            return found
    return []


def get_reader(path):
    """The plugin's reader (npe2 `readers`): a function of the path giving the layers, or None when `path`
    is not cellseg's results (napari then asks other readers)."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else None
    if not isinstance(path, (str, os.PathLike)) or not result_folders(os.fspath(path)):
        return None
    return read


def read(path) -> list[tuple]:
    """Every result folder under `path` as Labels (and Tracks) layers, named after its folder."""
    path = os.fspath(path[0] if isinstance(path, list) else path)
    return [layer for folder in result_folders(path) for layer in result_layers(folder)]
