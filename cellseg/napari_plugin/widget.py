"""The dock widget "cellseg: segment and track": a trained model over the open image layer, in a few clicks.

Choose a run folder or a package (`cellseg-export`'s .zip) and an image layer
(one frame, or a T x Y x X time-lapse), then Run. The work is `cellseg-predict`'s
own (`predict.run_prediction`, with the run's tuned thresholds, test-time
augmentation and tracking as chosen) on the layer's frames, written as a CTC
sequence into a scratch folder; it runs in a worker thread (napari's
`create_worker`) that reports each frame to the progress bar, and Cancel stops it
at the next frame. The results come back as a Labels layer, napari's Tracks
(the lineage graph included; `reader.result_layers`, as the plugin's reader
opens them) and the per-cell and per-track tables; Save copies the files the
command writes (`NN_RES/`, `cells.csv`, `tracks.csv`) into a folder.
"""

from __future__ import annotations

import csv
import os
import queue
import shutil
import tempfile
import threading
from concurrent import futures

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QTabWidget,
                            QVBoxLayout, QWidget)

from cellseg import ctc, predict, tiff, tracking
from cellseg.napari_plugin import reader

SEQUENCE = "01"  # the scratch sequence the layer's frames are written as; its results go to 01_RES/
LAYERS = ("cellseg", "cellseg tracks")  # the layers a run adds (reader.result_layers named "cellseg")


class Cancelled(Exception):
    """Raised from the progress callback when Cancel was pressed: prediction stops at that frame."""


def segment(frames: np.ndarray, model: str, folder: str, stop: threading.Event, tta: bool = True,
            track: bool = True, pixel_size: float | None = None, frame_interval: float | None = None):
    """A generator for napari's worker: writes `frames` (Y, X or T, Y, X) as a CTC sequence under `folder`,
    segments it with `predict.run_prediction` into `folder/results`, yielding (done, total) per frame; returns
    (run_prediction's summary, the result's layer data), or None when `stop` was set."""
    frames = frames[None] if frames.ndim == 2 else frames
    source = os.path.join(folder, SEQUENCE)
    os.makedirs(source, exist_ok=True)
    for t, frame in enumerate(frames):
        tiff.write(os.path.join(source, ctc.frame_name(t)), frame)
    updates: queue.Queue = queue.Queue()

    def progress(done: int, total: int) -> None:
        if stop.is_set():
            raise Cancelled
        updates.put((done, total))

    output = os.path.join(folder, "results")
    with futures.ThreadPoolExecutor(1, "cellseg-predict") as pool:
        running = pool.submit(predict.run_prediction, source, model, output, progress=progress, tta=tta,
                              track=track, pixel_size=pixel_size, frame_interval=frame_interval)
        while not (running.done() and updates.empty()):
            try:
                yield updates.get(timeout=0.05)
            except queue.Empty:
                pass
    try:
        summary = running.result()
    except Cancelled:
        return None
    return summary, reader.result_layers(os.path.join(output, predict.result_folder(SEQUENCE)), LAYERS[0])


def read_table(path: str) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of a CSV file the command wrote; ([], []) when there is none."""
    if not os.path.isfile(path):
        return [], []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return (rows[0], rows[1:]) if rows else ([], [])


class SegmentWidget(QWidget):
    """cellseg: segment and track (see the module's doc). `run()` returns the started worker."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.stop = threading.Event()
        self.scratch: tempfile.TemporaryDirectory | None = None
        self.results = ""  # the last finished run's output folder, what Save copies

        self.model = QLineEdit(placeholderText="a run folder or a package .zip")
        folder_button, package_button = QPushButton("Run folder..."), QPushButton("Package...")
        folder_button.clicked.connect(self._choose_folder)
        package_button.clicked.connect(self._choose_package)
        self.image = QComboBox()
        self.tta = QCheckBox("test-time augmentation (8 flips and turns)", checked=True)
        self.track = QCheckBox("track cells over time", checked=True)
        self.pixel_size = QDoubleSpinBox(decimals=4, maximum=1e4, specialValueText="unknown", suffix=" um")
        self.frame_interval = QDoubleSpinBox(decimals=3, maximum=1e6, specialValueText="unknown", suffix=" min")
        self.run_button, self.cancel_button = QPushButton("Run"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.progress = QProgressBar()
        self.status = QLabel("choose a model and an image layer")
        self.status.setWordWrap(True)
        self.tables = QTabWidget()
        self.cells_table, self.tracks_table = QTableWidget(), QTableWidget()
        self.tables.addTab(self.cells_table, "cells")
        self.tables.addTab(self.tracks_table, "tracks")
        self.save_button = QPushButton("Save results...")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save())

        chooser = QHBoxLayout()
        chooser.addWidget(folder_button)
        chooser.addWidget(package_button)
        form = QFormLayout()
        form.addRow("model", self.model)
        form.addRow("", chooser)
        form.addRow("image", self.image)
        form.addRow("", self.tta)
        form.addRow("", self.track)
        form.addRow("pixel size", self.pixel_size)
        form.addRow("frame interval", self.frame_interval)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.tables)
        layout.addWidget(self.save_button)

        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

    def _refresh_images(self, *_) -> None:
        chosen = self.image.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image.clear()
        self.image.addItems(names)
        if chosen in names:
            self.image.setCurrentText(chosen)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A cellseg run folder")
        if folder:
            self.model.setText(folder)

    def _choose_package(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A cellseg package", filter="bioimage.io package (*.zip)")
        if path:
            self.model.setText(path)

    def _frames(self) -> np.ndarray:
        """The chosen layer's frames (Y, X or T, Y, X); ValueError in one line when there are none to use."""
        name = self.image.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("choose an image layer")
        layer = self.viewer.layers[name]
        if layer.rgb:
            raise ValueError(f"{name}: an RGB layer; cellseg segments grey frames")
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data)  # the full resolution
        if data.ndim not in (2, 3) or min(data.shape[-2:]) < 2:
            raise ValueError(f"{name}: {data.ndim}-D {data.shape}; cellseg takes a frame (Y, X) or a time-lapse "
                             "(T, Y, X)")
        return data

    def run(self):
        """Start segmenting the chosen layer with the chosen model; the worker, or None (the reason shown)."""
        model = self.model.text().strip()
        try:
            if not model:
                raise ValueError("choose a model: a run folder or a package .zip")
            if not os.path.exists(model):
                raise ValueError(f"{model}: no such run folder or package")
            frames = self._frames()
        except ValueError as error:
            self.status.setText(str(error))
            return None
        self._cleanup()
        self.scratch = tempfile.TemporaryDirectory(prefix="cellseg-napari-")
        self.stop.clear()
        self.worker = create_worker(
            segment, frames, model, self.scratch.name, self.stop, self.tta.isChecked(), self.track.isChecked(),
            self.pixel_size.value() or None, self.frame_interval.value() or None, _start_thread=False,
            _connect={"yielded": self._progressed, "returned": self._finished, "errored": self._failed,
                      "finished": self._idle})
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.save_button.setEnabled(False)
        self.progress.setRange(0, len(frames) if frames.ndim == 3 else 1)
        self.progress.setValue(0)
        self.status.setText(f"segmenting {self.image.currentText()} with {os.path.basename(model)}...")
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop the running worker at its next frame; nothing is added to the viewer."""
        if self.worker is not None:
            self.stop.set()
            self.status.setText("cancelling...")

    def _progressed(self, update) -> None:
        done, total = update
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _finished(self, result) -> None:
        if result is None:
            self.status.setText("cancelled; nothing added")
            return
        summary, layers = result
        for name in LAYERS:  # an earlier run's, tracks included when this run has none
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        for data, meta, kind in layers:
            getattr(self.viewer, f"add_{kind}")(data, **meta)
        self.results = os.path.join(self.scratch.name, "results")
        self._fill(self.cells_table, os.path.join(self.results, predict.CELLS_TABLE))
        self._fill(self.tracks_table, os.path.join(self.results, tracking.TRACKS_TABLE))
        tracked = summary.get("tracking") or {}
        self.status.setText(
            f"{summary['frames']} frame(s), {summary['cells']} cells"
            + (f", {tracked['tracks']} tracks, {tracked['divisions']} divisions" if tracked else "")
            + f" ({_thresholds(summary)})")
        self.save_button.setEnabled(True)

    def _failed(self, error: Exception) -> None:
        self.status.setText(f"failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}")

    def _idle(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    @staticmethod
    def _fill(table: QTableWidget, path: str) -> None:
        columns, rows = read_table(path)
        table.clear()
        table.setColumnCount(len(columns))
        table.setRowCount(len(rows))
        table.setHorizontalHeaderLabels(columns)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(value))

    def save(self, folder: str | None = None) -> str | None:
        """Copy the last results (01_RES/, cells.csv, tracks.csv) into `folder` (asked for when None)."""
        if not self.results:
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save cellseg's results into")
            if not folder:
                return None
        shutil.copytree(self.results, folder, dirs_exist_ok=True)
        self.status.setText(f"saved to {folder}")
        return folder

    def _cleanup(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch, self.results = None, ""

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.cancel()
        super().closeEvent(event)


def _thresholds(summary: dict) -> str:
    """Where the post-processing thresholds came from, as cellseg-predict says it."""
    return "thresholds tuned on validation" if summary.get("tuned") else "the target's default thresholds"
