"""Input pipeline throughput: tf.data (+ on-device augmentation) against a numpy/scipy generator.

    python benchmarks/input_pipeline.py [--frames=64] [--size=512] [--patch=256] [--batch=16]

(a) tf.data alone: shards -> parse -> random crop -> batch;
(b) (a) plus `cellseg.augment` on the default device (a GPU where TensorFlow
    sees one, else the CPU), compiled with XLA, once per batch as the training
    step calls it: (b1) symmetries and elastic deformation
    (what (c) does), (b2) every part on;
(c) the approach this replaces: every frame in numpy arrays in memory, a Python
    generator deforming each sample with scipy (gaussian_filter of a random
    displacement field, map_coordinates) plus a random flip and quarter turn.
Prints images/s and the ratios to (c).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import ndimage  # noqa: E402

from beam_pipelines import ctc_to_tfrecord as convert  # noqa: E402
from cellseg import augment, batches, data, records as records_lib, schema, synthetic  # noqa: E402
from common import SCRATCH, show, write  # noqa: E402


def records(frames: int, size: int) -> records_lib.Records:
    """The converted dataset, synthesised and converted again when missing or of an older schema."""
    root = os.path.join(SCRATCH, f"Fluo-N2DH-INPUT-{frames}x{size}")
    out = os.path.join(SCRATCH, f"records-input-{frames}x{size}")
    try:
        with open(os.path.join(out, "dataset.json")) as handle:
            current = json.load(handle).get("schema_version") == schema.SCHEMA_VERSION
    except OSError:
        current = False
    if not current:
        shutil.rmtree(root, ignore_errors=True)
        print(f"synthesising and converting {frames} frames of {size} x {size}", file=sys.stderr)
        synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=1, frames=frames, height=size, width=size))
        convert.run([root], convert.Output(out), convert.Settings(val_fraction=0.0), overwrite=True)
    return records_lib.open_records(out)


def in_memory_frames(rec: records_lib.Records):
    """(c)'s starting point: every training frame decoded into numpy arrays (image, labels, maps)."""
    images, labels, maps = [], [], []
    for frame in data._read(tf.data.Dataset.from_tensor_slices(list(rec.train)), rec, len(rec.train), True):
        image, label, border = (t.numpy()[..., 0] for t in data._inputs(frame, False))
        images.append(image), labels.append(label), maps.append(border)
    return images, labels, maps


def scipy_generator(frames, patch: int, batch: int, sigma: float, seed: int = 0):
    """Batches as the original generator made them: per sample, in Python."""
    rng = np.random.default_rng(seed)
    images, labels, maps = frames
    ys, xs = np.meshgrid(np.arange(patch), np.arange(patch), indexing="ij")
    while True:
        out = ([], [], [])
        for _ in range(batch):
            i = rng.integers(len(images))
            r, c = rng.integers(0, images[i].shape[0] - patch + 1), rng.integers(0, images[i].shape[1] - patch + 1)
            crops = [a[i][r:r + patch, c:c + patch] for a in (images, labels, maps)]
            # Elastic: a random field smoothed to the deformation's scale, scaled to sigma px.
            dy = ndimage.gaussian_filter(rng.standard_normal((patch, patch)), 8.0)
            dx = ndimage.gaussian_filter(rng.standard_normal((patch, patch)), 8.0)
            dy *= sigma / (dy.std() + 1e-9)
            dx *= sigma / (dx.std() + 1e-9)
            coords = [ys + dy, xs + dx]
            crops = [ndimage.map_coordinates(a, coords, order=order, mode="reflect")
                     for a, order in zip(crops, (1, 0, 1))]
            k, flip = rng.integers(4), rng.integers(2)
            crops = [np.rot90(np.flipud(a) if flip else a, k) for a in crops]
            for store, a in zip(out, crops):
                store.append(a)
        yield tuple(np.stack(store)[..., None] for store in out)


def rate(batches, count: int, batch: int, warmup: int = 3) -> float:
    iterator = iter(batches)
    for _ in range(warmup):
        _force(next(iterator))
    start = time.perf_counter()
    for _ in range(count):
        _force(next(iterator))
    return count * batch / (time.perf_counter() - start)


def _force(batch):
    for tensor in batch:
        np.asarray(tensor)


def augmented(dataset, config: augment.Config):
    step = tf.function(lambda i, m, w, s: augment.augment(i, m, w, s, config), jit_compile=True)
    for n, (images, labels, maps) in enumerate(dataset):
        yield step(images, labels, maps, tf.constant([0, n], tf.int64))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "input_pipeline.json"))
    args = parser.parse_args()
    rec = records(args.frames, args.size)
    geometry = augment.Config(symmetries=True, elastic_sigma=10.0)
    everything = augment.Config(rotation=10, scale=0.1, gamma=0.2, contrast=0.1, brightness=0.1, noise=0.03)
    pipeline = lambda: data.training_dataset(rec, args.patch, args.batch)  # noqa: E731
    on = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    rows = [
        ("(a) tf.data alone", rate(pipeline(), args.batches, args.batch)),
        ("(a2) numpy batches alone (cellseg.batches: JAX's input, no TensorFlow)",
         rate(batches.training_input(rec, args.patch, args.batch, seed=0), args.batches, args.batch)),
        (f"(b1) tf.data + augment (symmetries, elastic), XLA on {on}",
         rate(augmented(pipeline(), geometry), args.batches, args.batch)),
        (f"(b2) tf.data + augment (all parts on), XLA on {on}",
         rate(augmented(pipeline(), everything), args.batches, args.batch)),
        ("(c) numpy arrays + scipy generator (elastic, flip, rot90)",
         rate(scipy_generator(in_memory_frames(rec), args.patch, args.batch, 10.0), max(5, args.batches // 3),
              args.batch)),
    ]
    base = rows[-1][1]
    show("input_pipeline", write(args.output_json, {
        "frames": args.frames, "size": args.size, "patch": args.patch, "batch": args.batch,
        "rows": [{"variant": n, "images_per_s": round(v, 1), "ratio_to_c": round(v / base, 2)} for n, v in rows]}))


if __name__ == "__main__":
    main()
