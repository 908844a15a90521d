"""Conversion throughput: the Beam job against a plain Python loop over the same work.

    python benchmarks/convert.py [--frames=100] [--size=512] [--variants=all]

Synthesises a fluorescence dataset (cached under benchmarks/scratch/), then
converts it with a plain loop (convert_frame + tf.io.TFRecordWriter, one process)
and with cellseg-convert's pipeline on the DirectRunner, and prints frames/s and
the ratio to the loop. Every variant does the same reading, preprocessing,
encoding and writing. By default: uncompressed shards, the loop against the
default multi_threading mode and multi_processing; `--variants=all` adds the
in_memory mode, gzip and a fixed shard count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from beam_pipelines import ctc_to_tfrecord as convert  # noqa: E402
from cellseg import ctc, synthetic  # noqa: E402
from common import SCRATCH, show, write  # noqa: E402


def dataset(frames: int, size: int) -> str:
    config = synthetic.Config(kind="fluo", sequences=2, frames=frames // 2, height=size, width=size, seed=0)
    root = os.path.join(SCRATCH, f"Fluo-N2DH-BENCH-{frames}x{size}")
    if not os.path.isdir(root) or len(ctc.discover(root).frames) != 2 * (frames // 2):
        shutil.rmtree(root, ignore_errors=True)
        print(f"synthesising {frames} frames of {size} x {size} into {root}", file=sys.stderr)
        synthetic.write_dataset(root, config)
    return root


def plain_loop(root: str, out: str, compression: str) -> int:
    settings = convert.Settings()
    suffix, options = (".tfrecord.gz", "GZIP") if compression == "gzip" else (".tfrecord", None)
    writers = {
        split: tf.io.TFRecordWriter(os.path.join(out, f"{split}{suffix}"), options=options)
        for split in ("train", "val")
    }
    written = 0
    for frame in ctc.discover(root).frames:
        mask_path, truth = frame.truth(settings.truth)
        converted = convert.convert_frame(frame, mask_path, truth, settings)
        writers[converted.split].write(converted.example)
        written += 1
    for writer in writers.values():
        writer.close()
    return written


def beam_job(root: str, out: str, mode: str, compression: str, num_shards: int = 0) -> int:
    args = [f"--direct_running_mode={mode}", "--direct_num_workers=" + ("1" if mode == "in_memory" else "0")]
    output = convert.Output(out, num_shards=num_shards, compression=compression)
    description = convert.run([root], output, convert.Settings(), args, overwrite=True)
    return description["counts"]["written"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--variants", choices=("default", "all"), default="default")
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "convert.json"))
    args = parser.parse_args()
    root = dataset(args.frames, args.size)
    every = args.variants == "all"
    variants = []
    for compression in ("none", "gzip") if every else ("none",):
        variants.append((compression, "plain Python loop, 1 process",
                         lambda out, c=compression: plain_loop(root, out, c)))
        if every:
            variants.append((compression, "Beam in_memory, 1 worker",
                             lambda out, c=compression: beam_job(root, out, "in_memory", c)))
        for mode in ("multi_threading", "multi_processing"):
            variants.append((compression, f"Beam {mode}, all cores",
                             lambda out, c=compression, m=mode: beam_job(root, out, m, c)))
    if every:
        variants.append(("gzip", "Beam multi_processing, --num_shards=4 (shuffle)", lambda out: beam_job(
            root, out, "multi_processing", "gzip", num_shards=4)))
    rows = []
    for compression, name, run in variants:
        out = os.path.join(SCRATCH, "out")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        start = time.perf_counter()
        written = run(out)
        seconds = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(out, name)) for name in os.listdir(out) if "tfrecord" in name)
        rows.append({"variant": name, "compression": compression, "frames": written, "seconds": round(seconds, 2),
                     "frames_per_s": round(written / seconds, 2), "mb_per_frame": round(size / written / 1e6, 3)})
        print(f"{name}, {compression}: {written} frames in {seconds:.1f} s", file=sys.stderr)
    loop = {row["compression"]: row["frames_per_s"] for row in rows if row["variant"].startswith("plain")}
    for row in rows:
        row["ratio"] = round(row["frames_per_s"] / loop[row["compression"]], 2)
    show("convert", write(args.output_json, {"frames": args.frames, "size": args.size, "rows": rows}, cpu_only=True))


if __name__ == "__main__":
    main()
