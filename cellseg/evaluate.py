"""cellseg-evaluate: score a result folder against reference masks, the challenge's way.

    cellseg-evaluate --pred=out/02_RES --gt=data/X/02_GT/SEG --baseline=otsu

Reports the CTC SEG measure (per reference object, the Jaccard index of the
predicted object covering more than half of it, 0 when none; the mean over all
reference objects), object detection at IoU 0.5 (TP, FP, FN, precision, recall,
F1) and pixel Dice, IoU, precision, recall and accuracy. With --baseline=otsu
the same frames are also segmented by Otsu thresholding plus a distance-transform
watershed, so every report shows what the U-Net adds over the classical method.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys

import numpy as np

from cellseg import instances, metrics, preprocess, tiff

_MASK = re.compile(r"^(?:man_seg|mask)(\d{3,})\.tiff?$")


def indexed(folder: str) -> dict[int, str]:
    """Frame index -> path of the man_segTTT.tif or maskTTT.tif files of a folder."""
    found = {}
    for path in glob.glob(os.path.join(folder, "*.tif*")):
        match = _MASK.match(os.path.basename(path))
        if match:
            found[int(match.group(1))] = path
    return found


def score(pairs) -> dict:
    """Scores of (reference labels, predicted labels) pairs, pooled over all frames."""
    references, predictions = [r for r, _ in pairs], [p for _, p in pairs]
    confusion = np.zeros(4)
    for reference, predicted in pairs:
        truth, guess = reference > 0, predicted > 0
        confusion += [np.sum(truth & guess), np.sum(~truth & guess), np.sum(truth & ~guess), np.sum(~truth & ~guess)]
    tp, fp, fn, tn = confusion
    ratio = lambda a, b: float(a / b) if b else 0.0  # noqa: E731
    return {
        "frames": len(pairs),
        "seg": metrics.seg_score(references, predictions),
        **metrics.detection_scores(references, predictions),
        "pixel_dice": ratio(2 * tp, 2 * tp + fp + fn),
        "pixel_iou": ratio(tp, tp + fp + fn),
        "pixel_precision": ratio(tp, tp + fp),
        "pixel_recall": ratio(tp, tp + fn),
        "pixel_accuracy": ratio(tp + tn, tp + fp + fn + tn),
    }


def otsu_labels(raw: np.ndarray, seed_height: float = 2.0, min_size: int = 10) -> np.ndarray:
    """The classical baseline: Otsu's threshold of the stretched frame, then a distance-transform watershed."""
    from skimage import filters

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
    references, predicted = indexed(gt_dir), indexed(pred_dir)
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
            frames = glob.glob(os.path.join(images_dir, f"t{index:03d}.tif")) + glob.glob(
                os.path.join(images_dir, f"t{index:04d}.tif"))
            if not frames:
                raise ValueError(f"{images_dir}: no frame t{index:03d}.tif for the Otsu baseline")
            baseline.append((reference, otsu_labels(tiff.read(frames[0]))))
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


def _define_flags():
    from absl import flags

    flags.DEFINE_string("pred", None, "Result folder with maskTTT.tif (e.g. out/02_RES).")
    flags.DEFINE_string("gt", None, "Reference folder with man_segTTT.tif (e.g. data/X/02_GT/SEG or 02_ST/SEG).")
    flags.DEFINE_enum("baseline", "none", ["none", "otsu"], "Also score a classical baseline on the same frames.")
    flags.DEFINE_string("images", None, "The frames, for the baseline (default: the sequence folder beside --gt).")
    flags.DEFINE_string("output_json", None, "Write the report as JSON here.")
    flags.mark_flags_as_required(["pred", "gt"])


def _main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    images = None
    if FLAGS.baseline == "otsu":
        # <dataset>/NN_GT/SEG -> <dataset>/NN
        truth_dir = os.path.dirname(os.path.normpath(FLAGS.gt))
        images = FLAGS.images or os.path.join(os.path.dirname(truth_dir), os.path.basename(truth_dir).split("_")[0])
    try:
        report = evaluate(FLAGS.pred, FLAGS.gt, images)
    except ValueError as error:
        sys.exit(f"cellseg-evaluate: {error}")
    print(markdown(report))
    if report["missing_predictions"]:
        print(f"\n{len(report['missing_predictions'])} reference frame(s) had no prediction and scored 0")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as handle:
            json.dump(report, handle, indent=2)


def run():
    from absl import app

    _define_flags()
    app.run(_main)


if __name__ == "__main__":
    from cellseg import evaluate as module

    module.run()
