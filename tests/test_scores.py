import numpy as np
import pytest

from cellseg import scores


def squares():
    reference = np.zeros((20, 30), np.uint16)
    reference[2:8, 2:8] = 1  # 36 px
    reference[10:16, 10:16] = 2  # 36 px
    return reference


def test_seg_of_hand_made_cases():
    reference = squares()
    assert scores.seg_score([reference], [reference * 7]) == 1.0  # label values do not matter
    half = np.where(reference == 1, 1, 0).astype(np.uint16)
    half[2:8, 5:8] = 0  # covers exactly half of object 1: not more than half, so 0
    assert scores.seg_jaccards(reference, half).tolist() == [0.0, 0.0]
    most = np.where(reference == 1, 1, 0).astype(np.uint16)
    most[2:8, 7:8] = 0  # covers 30 of 36 px
    assert scores.seg_jaccards(reference, most).tolist() == pytest.approx([30 / 36, 0.0])
    merged = (reference > 0).astype(np.uint16)  # one object over both
    assert scores.seg_jaccards(reference, merged).tolist() == pytest.approx([0.5, 0.5])
    assert scores.seg_score([reference], [np.zeros_like(reference)]) == 0.0


def test_detection_counts_at_iou_one_half():
    reference = squares()
    predicted = np.zeros_like(reference)
    predicted[2:8, 2:8] = 5  # object 1 exact
    predicted[10:12, 10:12] = 6  # object 2 barely: IoU 4/36
    predicted[17:19, 20:25] = 9  # a false object
    assert scores.detection_counts(reference, predicted) == {"tp": 1, "fp": 2, "fn": 1}


def test_detection_scores_pool_the_counts_of_every_frame():
    reference = squares()
    predicted = np.zeros_like(reference)
    predicted[2:8, 2:8] = 5  # frame 1: one of two found, one false object
    predicted[17:19, 20:25] = 9
    pooled = scores.detection_scores([reference, reference], [predicted, reference])  # frame 2: perfect
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (3, 1, 1)
    assert pooled["precision"] == 0.75 and pooled["recall"] == 0.75 and pooled["f1"] == pytest.approx(0.75)
    assert scores.detection_scores([reference], [np.zeros_like(reference)])["f1"] == 0.0


def test_seg_equals_the_ctc_metrics_package_on_synthetic_predictions(tmp_path):
    from ctc_metrics.metrics import seg as ctc_seg
    from ctc_metrics.utils.representations import match

    from cellseg import synthetic, tiff

    layout = synthetic.write_dataset(tmp_path / "data", synthetic.Config(kind="phc", sequences=1, frames=3,
                                                                        height=96, width=96, seed=2))
    rng = np.random.default_rng(0)
    references, predictions, ref_labels, ious = [], [], [], []
    for frame in layout.frames:
        reference = tiff.read(frame.silver)
        predicted = tiff.read(frame.silver).astype(np.int64)
        ids = np.unique(predicted[predicted > 0])
        predicted[np.isin(predicted, rng.choice(ids, 3, replace=False))] = 0  # missed cells
        predicted[np.isin(predicted, ids[:4])] = ids[0]  # merged cells
        predicted = np.roll(predicted, 1, axis=1).astype(np.uint16)  # a one-pixel shift
        ref_path, pred_path = tmp_path / f"ref{frame.index}.tif", tmp_path / f"pred{frame.index}.tif"
        tiff.write_labels(ref_path, reference)
        tiff.write_labels(pred_path, predicted)
        labels_ref, _, _, _, iou = match(str(ref_path), str(pred_path))
        references.append(reference), predictions.append(predicted), ref_labels.append(labels_ref), ious.append(iou)
    expected = ctc_seg(ref_labels, ious)
    assert 0.1 < expected < 0.95  # a non-trivial case: neither perfect nor empty
    assert scores.seg_score(references, predictions) == pytest.approx(expected, abs=1e-9)
