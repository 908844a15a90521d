"""Training throughput of the U-Net step (augmentation, forward, backward, update), images/s.

    python benchmarks/training.py [--steps=3] [--mixed_precision] [--all]

Base 16 and 64 filters at 256 x 256 and 512 x 512, with and without XLA
(`--jit_compile`), on the default device of this machine (all local GPUs under
MirroredStrategy when there are any). On a CPU, base 64 runs without XLA only
(cellseg-train's default), since each of its steps takes tens of seconds there;
`--all` runs it with XLA too. The batch is held in memory so that the model's
step is measured, not the input pipeline (see input_pipeline.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cellseg import augment, distribute, losses, metrics, segmenter  # noqa: E402
from common import SCRATCH, show, write  # noqa: E402
from timing import StepTimes  # noqa: E402


def throughput(strategy, base: int, size: int, batch: int, steps: int, jit: bool) -> float:
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 1)).astype(np.float32)
    masks = (images > 0.7).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors((images, masks, np.ones_like(images))).repeat()
    with strategy.scope():
        augmentation = augment.Config(rotation=10, scale=0.1, gamma=0.2, contrast=0.1, brightness=0.05, noise=0.02)
        net = segmenter.Segmenter(size, base, 4, augmentation=dataclasses.asdict(augmentation), target="binary")
        net.compile(optimizer=keras.optimizers.Adam(1e-4), loss=losses.SegmentationLoss(target="binary"),
                          metrics=metrics.pixel_metrics("binary"), jit_compile=jit)
    timer = StepTimes()
    net.fit(dataset, epochs=1, steps_per_epoch=steps + 1, callbacks=[timer], verbose=0)
    measured = np.diff(timer.times)  # the first step includes tracing and compilation
    return batch / float(np.median(measured))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=0, help="measured steps (default: 5 on GPUs, 1 on the CPU)")
    parser.add_argument("--mixed_precision", action="store_true")
    parser.add_argument("--bases", default="16,64", help="base filter counts, comma-separated")
    parser.add_argument("--sizes", default="256,512", help="patch sides, comma-separated")
    parser.add_argument("--all", action="store_true", help="on a CPU too, base 64 with XLA as well as without")
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "training.json"))
    args = parser.parse_args()
    strategy = distribute.make_strategy("auto")
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(distribute.mixed_policy())
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    rows = []
    for base in (int(b) for b in args.bases.split(",")):
        for size in (int(p) for p in args.sizes.split(",")):
            # Small CPU batches and a single measured step keep the whole bench within minutes.
            batch = (16 if size <= 256 else 4) if on_gpu else (2 if size <= 256 else 1)
            batch *= strategy.num_replicas_in_sync
            steps = args.steps or (5 if on_gpu else 1)
            for jit in (False, True) if on_gpu or args.all or base <= 16 else (False,):
                rate = throughput(strategy, base, size, batch, steps, jit)
                rows.append({"base_filters": base, "size": size, "batch": batch, "jit_compile": jit,
                             "mixed_precision": args.mixed_precision, "images_per_s": round(rate, 2)})
                print(f"base {base}, {size} x {size}, batch {batch}, jit {jit}: {rate:.2f} images/s", file=sys.stderr)
    show("training", write(args.output_json, {"mixed_precision": args.mixed_precision, "rows": rows}))


if __name__ == "__main__":
    main()
