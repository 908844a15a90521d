"""Scoring a result folder against reference masks, the challenge's way (numpy, no TensorFlow).

Reports the CTC SEG measure (per reference object, the Jaccard index of the
predicted object covering more than half of it, 0 when none; the mean over all
reference objects), object detection at IoU 0.5 (TP, FP, FN, precision, recall,
F1) and pixel Dice, IoU, precision, recall and accuracy. With the Otsu baseline
the same frames are also segmented by Otsu thresholding plus a distance-transform
watershed, so every report shows what the U-Net adds over the classical method.
"""

from __future__ import annotations

import os

import numpy as np
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
    if images_dir:
        baseline = []
        for index, (reference, _) in zip(sorted(references), pairs):
            frame = ctc.frame_path(images_dir, index)
            if frame is None:
                raise ValueError(f"{images_dir}: no frame t{index:03d}.tif for the Otsu baseline")
            baseline.append((reference, otsu_labels(tiff.read(frame))))
        report["otsu"] = score(baseline)
    return report


def markdown(report: dict) -> str:
    methods = [name for name in ("cellseg", "otsu") if name in report]
    columns = ["seg", "f1", "precision", "recall", "pixel_dice", "pixel_iou", "pixel_accuracy"]
    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for name in methods:
        label = "U-Net (cellseg)" if name == "cellseg" else "Otsu + watershed"
        lines.append(f"| {label} | " + " | ".join(f"{report[name][c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)
