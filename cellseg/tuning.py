"""Post-processing tuned on the whole validation frames at the end of training (`postprocess.json`)."""

from __future__ import annotations

import json
import os

import numpy as np

from cellseg import instances, records as records_lib, run_folder, segmenter, tiling
from cellseg.progress import Progress

TUNE_FRAMES = 32
TUNE_PIXELS = 2**23  # whole validation frames' pixels tuned on: large frames, fewer (each holds many cells)
FEW_CELLS = 20


def tune(trained: segmenter.Segmenter, records: records_lib.Records, model_dir: str, log=print) -> dict:
    """Choose the post-processing thresholds that maximise SEG on the whole validation frames.

    The frames are predicted as `cellseg-predict` does (whole, or in tiles when
    large, test-time augmented); the result goes to `postprocess.json`. Of more than
    `TUNE_FRAMES` validation frames, every n-th is used (at most `TUNE_FRAMES`, and
    fewer of large frames: `TUNE_PIXELS` in all).
    With fewer than `FEW_CELLS` validation cells, a warning says the thresholds rest on little.
    """
    network = segmenter.Network(trained)
    # As cellseg-predict does by default: outputs averaged over the 8 flips and quarter turns.
    predict_batch = tiling.averaged_over_symmetries(network)
    frames = records_lib.validation_sample(records, TUNE_FRAMES, TUNE_PIXELS)
    outputs, references = [], []
    predicting = Progress("predicting validation frames")
    for image, labels in frames:
        tile, overlap = network.layout(*image.shape)
        outputs.append(tiling.predict_outputs(predict_batch, image, tile, overlap, tiling.tiles_per_call(tile)))
        references.append(labels)
        predicting(len(outputs), len(frames))
    settings, seg = instances.tune(outputs, references, trained.target,
                                   progress=Progress("tuning post-processing on validation frames"))
    tuned = {**settings.to_dict(), "seg": seg, "tta": True, "frames": len(outputs),
             "objects": int(sum(len(np.unique(r[r > 0])) for r in references))}
    if tuned["objects"] < FEW_CELLS:
        log(f"warning: post-processing tuned on {tuned['objects']} validation cell(s) only (fewer than "
            f"{FEW_CELLS}); its thresholds may not hold on other frames: give the validation split more "
            "frames (cellseg-convert --val_fraction or --val_sequences), or set them in cellseg-predict")
    with open(os.path.join(model_dir, run_folder.POSTPROCESS), "w") as handle:
        json.dump(tuned, handle, indent=2)
    log(f"post-processing tuned on {len(outputs)} validation frame(s): target {settings.target}, "
        f"{settings.describe()}, fill holes {settings.fill_holes}; SEG {seg:.3f}")
    return tuned
