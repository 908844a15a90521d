"""Inference time per frame: the network on a whole frame, then its post-processing.

    python benchmarks/inference.py [--sizes=512,1024] [--repeats=0] [--base_filters=16]

A U-Net (base 16, depth 4, untrained: the time does not depend on the weights)
predicts synthetic frames on the default device (a GPU where TensorFlow sees
one), side by side in one run: a plain Keras forward pass of the whole frame
(`predict_on_batch` of the same architecture built at the frame's size), cellseg's
network step (`cellseg.predict.network_outputs`: the frame's own layout, whole
here), and the former overlap-tile prediction (tiles of 256 overlapping by 64, 4
per batch). After one warm-up frame of each size the median of a few frames is
reported. Post-processing
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

import keras  # noqa: E402

from cellseg import instances, predict, preprocess, segmenter, synthetic, targets, tiling  # noqa: E402
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
    net = segmenter.Segmenter(tile, args.base_filters, args.depth, target="binary")
    tiled = segmenter.output_model(net, tile)
    network = segmenter.Network(net)
    model = predict.Model(network, "binary", None, "", network.layout)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        image, labels = frame(size)
        repeats = args.repeats or (10 if on_gpu else 3 if size <= 512 else 2)
        plain = keras.Sequential([segmenter.unet_of(net.architecture, "binary", size), keras.layers.Activation("sigmoid")])
        plain.set_weights(net.unet.get_weights())
        batch = image[None, ..., None]
        works = {
            "keras_ms": lambda: plain.predict_on_batch(batch),  # noqa: B023
            "cellseg_ms": lambda: predict.network_outputs(model, [image]),  # noqa: B023
            "tiles_256_ms": lambda: tiling.predict_outputs(tiled.predict_on_batch, image, tile, overlap, args.batch),  # noqa: B023
        }
        row = {"size": size, "repeats": repeats, "layout": str(network.layout(size, size))}
        for name, work in works.items():
            work()  # warm-up: builds and traces what this frame size needs
        for _ in range(2):  # interleaved, so that a slow spell of the machine touches every row alike
            for name, work in works.items():
                row[name] = min(row.get(name, float("inf")), round(median_ms(work, repeats), 1))
        row["cellseg_over_keras"] = round(row["cellseg_ms"] / row["keras_ms"], 2)
        row["tiles_over_keras"] = round(row["tiles_256_ms"] / row["keras_ms"], 2)
        for target in ("binary", "three_class"):
            outputs, settings = outputs_from_labels(labels, target), instances.Postprocess(target)
            row[f"postprocess_{target}_ms"] = round(median_ms(lambda: instances.labels_from_outputs(outputs, settings),
                                                              5), 1)
        row["cells"] = int(len(np.unique(labels)) - 1)
        rows.append(row)
        print(f"{size} x {size}: {row}", file=sys.stderr)
    show("inference", write(args.output_json, {"tile": tile, "overlap": overlap, "batch": args.batch,
                                               "base_filters": args.base_filters, "depth": args.depth, "rows": rows}))


if __name__ == "__main__":
    main()
