"""Scoring a result folder against reference masks, the challenge's way (numpy, no TensorFlow).

Reports the CTC SEG measure (per reference object, the Jaccard index of the
predicted object covering more than half of it, 0 when none; the mean over all
reference objects), object detection at IoU 0.5 (TP, FP, FN, precision, recall,
F1) and pixel Dice, IoU, precision, recall and accuracy; when the truth has
tracks (`NN_GT/TRA`) and the results a `res_track.txt`, the challenge's
tracking scores TRA, DET and LNK (computed by py-ctcmetrics, the challenge's
own measures in Python). With the Otsu baseline
the same frames are also segmented by Otsu thresholding plus a distance-transform
watershed, so every report shows what the U-Net adds over the classical method.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
from ctc_metrics.scripts.evaluate import evaluate_sequence
from skimage import filters

from cellseg import ctc, instances, preprocess, scores, tiff


def score(pairs) -> dict:
    """Scores of (reference labels, predicted labels) pairs, pooled over all frames."""
    references, predictions = [r for r, _ in pairs], [p for _, p in pairs]
    counts = sum((scores.confusion(reference, predicted) for reference, predicted in pairs), np.zeros(4))
    return {
        "frames": len(pairs),
        "seg": scores.seg_score(references, predictions),
        **scores.detection_scores(references, predictions),
        **{name if name.startswith("pixel_") else f"pixel_{name}": value
           for name, value in scores.pixel_scores(counts).items()},
    }


def otsu_labels(raw: np.ndarray, seed_height: float = 2.0, min_size: int = 10) -> np.ndarray:
    """The classical baseline: Otsu's threshold of the stretched frame, then a distance-transform watershed."""
    image, _ = preprocess.percentile_stretch(raw)
    mask = image > filters.threshold_otsu(image)
    if mask.mean() > 0.5:  # dark cells on a bright background
        mask = ~mask
    return instances.split_touching(mask, seed_height, min_size)


def evaluate(pred_dir: str, gt_dir: str, images_dir: str | None = None) -> dict:
    """Scores of `pred_dir` (maskTTT.tif) against `gt_dir` (man_segTTT.tif); with `images_dir`, Otsu's too."""
    for folder, flag in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not os.path.isdir(folder):
            raise ValueError(f"{flag}={folder}: no such folder")
    references, predicted = ctc.masks_by_index(gt_dir), ctc.masks_by_index(pred_dir)
    if not references:
        raise ValueError(f"{gt_dir}: no man_segTTT.tif reference masks")
    if not predicted:
        raise ValueError(f"{pred_dir}: no maskTTT.tif result masks (cellseg-predict writes them to NN_RES/)")
    missing = sorted(set(references) - set(predicted))
    pairs = []
    for index in sorted(references):
        reference = tiff.read(references[index])
        guess = tiff.read(predicted[index]) if index in predicted else np.zeros_like(reference)
        if guess.shape != reference.shape:
            raise ValueError(f"{predicted[index]}: {guess.shape} but its reference is {reference.shape}")
        pairs.append((reference, guess))
    report = {"pred": pred_dir, "gt": gt_dir, "missing_predictions": missing, "cellseg": score(pairs)}
    tracks = os.path.join(os.path.dirname(os.path.normpath(gt_dir)), "TRA")
    if os.path.exists(os.path.join(tracks, "man_track.txt")):
        report["tracking"] = tracking_scores(pred_dir, os.path.dirname(tracks))
    if images_dir:
        baseline = []
        for index, (reference, _) in zip(sorted(references), pairs):
            frame = ctc.frame_path(images_dir, index)
            if frame is None:
                raise ValueError(f"{images_dir}: no frame t{index:03d}.tif for the Otsu baseline")
            baseline.append((reference, otsu_labels(tiff.read(frame))))
        report["otsu"] = score(baseline)
    return report


def tracking_scores(pred_dir: str, truth_dir: str) -> dict:
    """TRA, DET and LNK of `pred_dir` (masks and res_track.txt) against `truth_dir`/TRA (py-ctcmetrics)."""
    if not os.path.exists(os.path.join(pred_dir, ctc.TRACKS)):
        return {"skipped": f"{pred_dir} has no {ctc.TRACKS} (cellseg-track --input={pred_dir} writes it)"}
    found, expected = ctc.masks_by_index(pred_dir), ctc.masks_by_index(os.path.join(truth_dir, "TRA"))
    # py-ctcmetrics fails on a malformed or empty track file with numpy's errors, and scores a track that runs
    # past the last frame as if it stopped there: both files are checked first, each error naming its file.
    tracks, truth = os.path.join(pred_dir, ctc.TRACKS), os.path.join(truth_dir, "TRA", "man_track.txt")
    if not ctc.read_tracks(tracks, max(found)):
        if any(tiff.read(path).any() for path in found.values()):
            raise ValueError(f"{tracks}: empty, but the masks hold cells; expected one 'label first last parent' "
                             "line per track")
        return {"skipped": f"{pred_dir}: no cell in any mask, no track to score"}
    if expected and not ctc.read_tracks(truth, max(expected)):
        raise ValueError(f"{truth}: empty; the tracking truth needs one 'label first last parent' line per track")
    if len(found) != len(expected):
        return {"skipped": f"{pred_dir} holds {len(found)} masks, the tracking truth {len(expected)} frames"}
    # py-ctcmetrics prints its progress and warns about each invalid link: the report says it all.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores_found = evaluate_sequence(pred_dir, truth_dir, metrics=["TRA", "DET", "LNK"], threads=1)
    if any(scores_found.get(name) is None for name in ("TRA", "DET", "LNK")):  # results it finds invalid
        reason = f": {str(caught[0].message).splitlines()[0]}" if caught else ""
        return {"skipped": f"py-ctcmetrics finds the tracking results in {pred_dir} invalid{reason}"}
    return {name.lower(): float(scores_found[name]) for name in ("TRA", "DET", "LNK")}


def markdown(report: dict) -> str:
    methods = [name for name in ("cellseg", "otsu") if name in report]
    columns = ["seg", "f1", "precision", "recall", "pixel_dice", "pixel_iou", "pixel_accuracy"]
    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name in methods:
        label = "U-Net (cellseg)" if name == "cellseg" else "Otsu + watershed"
        lines.append(f"| {label} | " + " | ".join(f"{report[name][c]:.3f}" for c in columns) + " |")
    found = report.get("tracking")
    if found and "skipped" in found:
        lines.append(f"\ntracking not scored: {found['skipped']}")
    elif found:
        lines.append(f"\ntracking: TRA {found['tra']:.3f}, DET {found['det']:.3f}, LNK {found['lnk']:.3f}")
    return "\n".join(lines)
