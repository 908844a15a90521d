"""cellseg's CTC results opened by napari's CTC reader (napari-ctc-io), as a napari user would open them.

The results are written by `tracking.Recorder`, the code that `cellseg-predict`
and `cellseg-track` both use for `NN_RES/maskTTT.tif` and `res_track.txt`.
"""

import collections
import pathlib

import numpy as np
import pytest
from scipy import ndimage

from cellseg import ctc, synthetic, tiff, tracking


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """A tracked synthetic sequence with divisions: (its RES folder, the masks stacked, res_track.txt's rows)."""
    root = tmp_path_factory.mktemp("viewers")
    synthetic.write_dataset(root / "X", synthetic.Config(kind="fluo", sequences=1, frames=6, height=96, width=96,
                                                         seed=3))
    res = root / "01_RES"
    summary = tracking.track_folder(str(root / "X" / "01_GT" / "TRA"), str(res))
    assert summary["divisions"] == 2 and summary["frames"] == 6
    masks = np.stack([tiff.read(res / ctc.result_name(t)) for t in range(6)])
    return res, masks, ctc.read_tracks(res / "res_track.txt")


def test_napari_s_ctc_reader_opens_the_labels_and_tracks_cellseg_wrote(result):
    import napari_ctc_io  # imports napari itself; no Qt or display needed

    res, masks, rows = result
    reader = napari_ctc_io.napari_get_reader(str(res))  # the plugin's reader, as napari's File > Open calls it
    assert reader is not None
    (labels, _, labels_kind), (tracks, tracks_meta, tracks_kind) = reader(pathlib.Path(res))
    assert (labels_kind, tracks_kind) == ("labels", "tracks")
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, masks)
    # The tracks layer: one (track, t, y, x) row per cell and frame, over each track's span in res_track.txt.
    ids, times = tracks[:, 0].astype(int), tracks[:, 1].astype(int)
    spans = {label: sorted(times[ids == label].tolist()) for label in set(ids.tolist())}
    assert spans == {label: list(range(first, last + 1)) for label, first, last, _ in rows}
    for label, t, y, x in tracks:
        assert (y, x) == pytest.approx(ndimage.center_of_mass(masks[int(t)] == label))
    # Parents as napari's graph {child: [parent]}: both divisions, each parent with two daughters.
    graph = {int(child): [int(p) for p in parents] for child, parents in tracks_meta["graph"].items()}
    assert graph == {label: [parent] for label, _, _, parent in rows if parent}
    assert sorted(collections.Counter(parent for [parent] in graph.values()).values()) == [2, 2]
