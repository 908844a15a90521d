"""Inference time per frame: the overlap-tile prediction of a whole frame, then its post-processing.

    python benchmarks/inference.py [--sizes=512,1024] [--repeats=0] [--base_filters=16]

A U-Net (base 16, depth 4, untrained: the time does not depend on the weights)
predicts synthetic frames through `cellseg.tiling.predict_outputs` with
cellseg-predict's default tile (256) and overlap (64), 4 tiles per batch, on
the default device (a GPU where TensorFlow sees one). After one warm-up frame
of each size the median of a few frames is reported. Post-processing
(`labels_from_outputs`, binary and three_class targets) is timed on its own, on
outputs made from the frame's true labels, so that the watershed meets
realistic cells and not an untrained network's noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import ndimage  # noqa: E402

from cellseg import instances, preprocess, segmenter, synthetic, targets, tiling  # noqa: E402
from common import SCRATCH, show, write  # noqa: E402


def frame(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A stretched synthetic fluorescence frame [size, size] and its instance labels."""
    config = synthetic.Config(kind="fluo", sequences=1, frames=1, height=size, width=size, seed=0)
    image, labels = next(iter(synthetic.Simulation(config, 1)))
    return preprocess.percentile_stretch(image)[0], labels


def outputs_from_labels(labels: np.ndarray, target: str) -> np.ndarray:
    """Outputs [H, W, C] a well-trained network might give: the true classes, slightly blurred."""
    if target == "binary":
        channels = (labels > 0)[..., None]
    else:
        channels = np.eye(3, dtype=np.float32)[targets.three_class_numpy(labels)]
    blurred = np.stack([ndimage.gaussian_filter(c.astype(np.float32), 1.0) for c in np.moveaxis(channels, -1, 0)], -1)
    return blurred / blurred.sum(-1, keepdims=True) if target == "three_class" else blurred


def median_ms(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024", help="frame sides, comma-separated")
    parser.add_argument("--repeats", type=int, default=0, help="timed frames per size (default: 10 on a GPU, "
                                                               "3 on the CPU, 2 there for frames over 512)")
    parser.add_argument("--base_filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="tiles per prediction batch")
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "inference.json"))
    args = parser.parse_args()
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    tile, overlap = tiling.DEFAULT_TILE, tiling.DEFAULT_OVERLAP
    network = segmenter.output_model(segmenter.Segmenter(tile, args.base_filters, args.depth, target="binary"), tile)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        image, labels = frame(size)
        repeats = args.repeats or (10 if on_gpu else 3 if size <= 512 else 2)
        run = lambda: tiling.predict_outputs(network.predict_on_batch, image, tile, overlap, args.batch)  # noqa: E731
        run()  # warm-up: traces the batch shapes this frame size needs
        row = {"size": size, "tiles": int(np.prod(tiling.tile_layout(size, size, tile, overlap)[1:3])),
               "repeats": repeats, "predict_ms": round(median_ms(run, repeats), 1)}
        for target in ("binary", "three_class"):
            outputs, settings = outputs_from_labels(labels, target), instances.Postprocess(target)
            row[f"postprocess_{target}_ms"] = round(median_ms(lambda: instances.labels_from_outputs(outputs, settings),
                                                              3), 1)
        row["cells"] = int(len(np.unique(labels)) - 1)
        rows.append(row)
        print(f"{size} x {size}: {row}", file=sys.stderr)
    show("inference", write(args.output_json, {"tile": tile, "overlap": overlap, "batch": args.batch,
                                               "base_filters": args.base_filters, "depth": args.depth, "rows": rows}))


if __name__ == "__main__":
    main()
