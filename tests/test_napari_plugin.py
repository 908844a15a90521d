"""The napari plugin: its manifest, the widget against cellseg-predict, Cancel, the reader, the sample data.

Headless: Qt offscreen (tests/conftest.py), pytest-qt's qtbot, and napari's
ViewerModel, the viewer without its OpenGL canvas (which offscreen Qt cannot
draw); the widget only uses the viewer's layer list.
"""

import collections
import csv
import gc
import io
import os
import subprocess
import sys

import napari
import numpy as np
import pytest
from napari.components import ViewerModel
from PIL import Image, ImageDraw
from qtpy.QtCore import QBuffer, QIODevice, Qt
from qtpy.QtWidgets import QLabel, QProgressBar
from scipy import ndimage

from cellseg import ctc, predict, synthetic, tiff, tracking
from cellseg.napari_plugin import reader, samples
from cellseg.napari_plugin import widget as widget_lib

FIGURES = os.environ.get("CELLSEG_FIGURES", "")  # a folder: the screenshot goes there too (docs/figures)


def test_the_manifest_declares_the_widget_reader_and_sample_data_and_npe2_validates_it():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("cellseg")
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["cellseg: segment and track"]
    assert [r.accepts_directories for r in contributions.readers] == [True]
    assert sorted(s.key for s in contributions.sample_data) == ["fluorescence", "phase_contrast"]
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "npe2"), "validate", "cellseg", "--imports"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "Manifest for 'cellseg' valid!" in done.stdout, done.stdout + done.stderr[-2000:]


def test_qt_s_methods_that_return_nothing_leave_none_s_reference_count_as_it_was(qtbot):
    # PySide6 6.12.0 released a reference to None at each such call; on Python 3.11, where None has a count,
    # the widget's status and progress updates brought it to zero and the interpreter aborted.
    label, bar = QLabel(), QProgressBar()
    qtbot.addWidget(label)
    qtbot.addWidget(bar)
    gc.collect()
    before = sys.getrefcount(None)
    for i in range(5000):
        label.setText(f"{i} of 5000")
        bar.setValue(i % 100)
    gc.collect()
    assert abs(sys.getrefcount(None) - before) < 100, (before, sys.getrefcount(None))


def test_the_sample_data_is_cellseg_synth_s_sequence(tmp_path):
    synthetic.write_dataset(tmp_path, synthetic.Config(kind="phc", sequences=1, frames=3, height=64, width=64,
                                                       seed=4))
    (image, _, image_kind), (truth, _, truth_kind) = samples.sequence("phc", frames=3, size=64, seed=4)
    assert (image_kind, truth_kind) == ("image", "labels") and image.shape == (3, 64, 64)
    for t in range(3):
        np.testing.assert_array_equal(image[t], tiff.read(tmp_path / "01" / ctc.frame_name(t)))
        np.testing.assert_array_equal(truth[t], tiff.read(tmp_path / "01_GT" / "TRA" / f"man_track{t:03d}.tif"))
    assert [layer[0].shape for layer in samples.phase_contrast()] == [(12, 256, 256)] * 2


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tracked synthetic sequence with divisions, written as cellseg writes results: its RES folder."""
    root = tmp_path_factory.mktemp("plugin-reader")
    synthetic.write_dataset(root / "X", synthetic.Config(kind="fluo", sequences=1, frames=6, height=96, width=96,
                                                         seed=3))
    res = root / "run" / "predictions" / "01_RES"
    summary = tracking.track_folder(str(root / "X" / "01_GT" / "TRA"), str(res))
    assert summary["divisions"] == 2
    return res


def test_the_reader_opens_a_result_folder_as_labels_and_tracks_with_the_lineage(tracked, tmp_path):
    rows = ctc.read_tracks(tracked / ctc.TRACKS)
    masks = np.stack([tiff.read(tracked / ctc.result_name(t)) for t in range(6)])
    for path in (tracked, tracked.parent, tracked.parent.parent):  # the folder, predictions/, the run folder
        read = reader.get_reader(str(path))
        assert read is reader.read
        (labels, labels_meta, labels_kind), (tracks, tracks_meta, tracks_kind) = read(str(path))
        assert (labels_kind, tracks_kind) == ("labels", "tracks") and labels_meta["name"] == "01_RES"
        np.testing.assert_array_equal(labels, masks)
        assert len(set(tracks[:, 0].astype(int))) == len(rows)  # the right number of tracks
        for label, t, y, x in tracks[::7]:
            assert (y, x) == pytest.approx(ndimage.center_of_mass(masks[int(t)] == label))
        assert tracks_meta["graph"] == {label: [parent] for label, _, _, parent in rows if parent}
        assert sorted(collections.Counter(p for [p] in tracks_meta["graph"].values()).values()) == [2, 2]
        # napari's own Tracks layer takes them as they are.
        layer = napari.layers.Tracks(tracks, graph=tracks_meta["graph"])
        assert len(layer.properties["track_id"]) == len(tracks)
    assert reader.get_reader(str(tmp_path)) is None and reader.get_reader(str(tmp_path / "x.tif")) is None
    with pytest.raises(ValueError, match="no maskTTT.tif files"):
        reader.result_layers(str(tmp_path))


def _widget(qtbot, viewer, model, tta=False):
    widget = widget_lib.SegmentWidget(viewer)
    qtbot.addWidget(widget)
    widget.model.setText(model)
    widget.tta.setChecked(tta)
    return widget


def _run(qtbot, widget, timeout_ms=240_000):
    """Click Run, as a user does, and wait for the worker to finish."""
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    assert widget.worker is not None and not widget.run_button.isEnabled(), widget.status.text()
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=timeout_ms)
    return widget.worker


def test_the_widget_segments_and_tracks_as_cellseg_predict_does(qtbot, tiny_run, tmp_path):
    frames = samples.sequence("fluo", frames=5, size=96, seed=7)[0][0]
    viewer = ViewerModel()
    viewer.add_image(frames, name="movie")
    widget = _widget(qtbot, viewer, tiny_run)
    assert widget.image.currentText() == "movie"
    _run(qtbot, widget)
    assert "cells" in widget.status.text(), widget.status.text()
    # cellseg-predict, as a user types it, on the same frames as a CTC sequence folder.
    os.makedirs(tmp_path / "in" / "01")
    for t, frame in enumerate(frames):
        tiff.write(tmp_path / "in" / "01" / ctc.frame_name(t), frame)
    done = subprocess.run([sys.executable, "-m", "cellseg.cli.predict", f"--model={tiny_run}", "--notta",
                           f"--input={tmp_path / 'in' / '01'}", f"--output_dir={tmp_path / 'cmd'}"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = np.stack([tiff.read(tmp_path / "cmd" / "01_RES" / ctc.result_name(t)) for t in range(5)])
    assert expected.max() > 0
    np.testing.assert_array_equal(viewer.layers["cellseg"].data, expected)
    rows = ctc.read_tracks(tmp_path / "cmd" / "01_RES" / ctc.TRACKS)
    tracks = viewer.layers["cellseg tracks"]
    assert len(set(tracks.data[:, 0].astype(int))) == len(rows)
    assert tracks.graph == {label: [parent] for label, _, _, parent in rows if parent}
    with open(tmp_path / "cmd" / "cells.csv") as handle:
        cells = list(csv.reader(handle))
    assert widget.cells_table.rowCount() == len(cells) - 1 and widget.cells_table.columnCount() == len(cells[0])
    assert [widget.cells_table.item(0, c).text() for c in range(len(cells[0]))] == cells[1]
    with open(tmp_path / "cmd" / "tracks.csv") as handle:
        assert widget.tracks_table.rowCount() == len(list(csv.reader(handle))) - 1 > 0
    # Save writes the command's files.
    saved = widget.save(str(tmp_path / "saved"))
    for name in ("cells.csv", "tracks.csv", os.path.join("01_RES", ctc.TRACKS), os.path.join("01_RES", "mask004.tif")):
        assert (tmp_path / "saved" / name).read_bytes() == (tmp_path / "cmd" / name).read_bytes(), name
    assert saved == str(tmp_path / "saved")
    # A second run, untracked, replaces the layers: the same masks but for their labels, and no tracks.
    assert [layer.name for layer in viewer.layers] == ["movie", "cellseg", "cellseg tracks"]
    widget.track.setChecked(False)
    _run(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["movie", "cellseg"]
    np.testing.assert_array_equal(viewer.layers["cellseg"].data > 0, expected > 0)
    assert widget.tracks_table.rowCount() == 0


def test_cancel_stops_the_worker_and_adds_nothing(qtbot, tiny_run):
    # 24 frames of 512 x 512: the network takes 16 a call and reports after each call's instances, (16, 24) first.
    frames = np.tile(samples.sequence("fluo", frames=1, size=512, seed=7)[0][0], (24, 1, 1))
    viewer = ViewerModel()
    viewer.add_image(frames, name="long movie")
    widget = _widget(qtbot, viewer, tiny_run)
    seen = []
    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    widget.worker.yielded.connect(seen.append)
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)  # while the model loads
    assert widget.status.text() == "cancelling..."
    qtbot.waitUntil(lambda: widget.run_button.isEnabled(), timeout=240_000)
    assert widget.status.text() == "cancelled; nothing added"
    assert seen == [] and not widget.worker.is_running  # stopped at its first report
    assert [layer.name for layer in viewer.layers] == ["long movie"]
    assert not widget.save_button.isEnabled() and widget.save() is None


def test_the_widget_names_what_it_cannot_use_in_one_line(qtbot, tiny_run, tmp_path):
    viewer = ViewerModel()
    widget = _widget(qtbot, viewer, "")
    assert widget.run() is None and widget.status.text() == "choose a model: a run folder or a package .zip"
    widget.model.setText(str(tmp_path / "nothing"))
    assert widget.run() is None and widget.status.text() == f"{tmp_path / 'nothing'}: no such run folder or package"
    widget.model.setText(tiny_run)
    assert widget.run() is None and widget.status.text() == "choose an image layer"
    viewer.add_image(np.zeros((2, 3, 16, 16), np.uint8), name="4d")
    assert widget.run() is None and widget.status.text().startswith("4d: 4-D (2, 3, 16, 16); cellseg takes")
    viewer.add_image(np.zeros((16, 16), np.uint8), name="flat")
    widget.image.setCurrentText("flat")
    widget.model.setText(str(tmp_path))  # a folder, but no model: the worker fails and says why
    _run(qtbot, widget)
    assert widget.status.text().startswith(f"failed: {tmp_path}: a folder that is neither a run folder")
    assert [layer.name for layer in viewer.layers] == ["4d", "flat"]


def _picture(viewer, widget, t: int) -> np.ndarray:
    """The widget as Qt draws it offscreen, beside frame `t` of the image layer with the Labels layer in napari's
    own label colours and each track's path so far (napari's canvas needs OpenGL, which offscreen Qt lacks)."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    widget.grab().save(buffer, "PNG")
    panel = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    image, labels, tracks = (viewer.layers[name] for name in (widget.image.currentText(), "cellseg", "cellseg tracks"))
    grey = np.repeat(predict.grey(image.data[t])[..., None], 3, axis=-1).astype(np.float64)
    colours = labels.colormap.map(labels.data[t].ravel()).reshape(*labels.data[t].shape, 4)
    inside = labels.data[t][..., None] > 0
    canvas = Image.fromarray(np.where(inside, 0.55 * grey + 0.45 * 255 * colours[..., :3], grey).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for track in np.unique(tracks.data[:, 0]):
        path = tracks.data[(tracks.data[:, 0] == track) & (tracks.data[:, 1] <= t)]
        if len(path) > 1:
            colour = tuple(int(255 * c) for c in labels.colormap.map(np.array([int(track)]))[0, :3])
            draw.line([(x, y) for _, _, y, x in path], fill=colour, width=2)
    scale = panel.height / canvas.height
    canvas = canvas.resize((round(canvas.width * scale), panel.height), Image.Resampling.NEAREST)
    both = Image.new("RGB", (canvas.width + panel.width, panel.height), "white")
    both.paste(canvas, (0, 0))
    both.paste(panel, (canvas.width, 0))
    return np.asarray(both)


def test_a_picture_of_the_widget_over_a_phase_contrast_sequence(qtbot, tiny_run, tmp_path):
    model = os.environ.get("CELLSEG_FIGURE_MODEL", tiny_run)  # docs/figures: a model trained on phase contrast
    (frames, meta, _), _ = samples.phase_contrast()
    viewer = ViewerModel()
    viewer.add_image(frames, **meta)
    widget = _widget(qtbot, viewer, model, tta=False)
    widget.resize(420, 720)
    _run(qtbot, widget)
    picture = _picture(viewer, widget, len(frames) - 1)
    assert picture.shape[0] == widget.grab().height() and picture.shape[1] > widget.grab().width()
    canvas = picture[:, : picture.shape[1] - widget.grab().width()]
    assert canvas.std(axis=-1).max() > 0  # the labels' colours are drawn over the grey frame
    for folder in filter(None, (str(tmp_path), FIGURES)):
        Image.fromarray(picture).save(os.path.join(folder, "napari_widget.png"))
