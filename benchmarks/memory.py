"""Peak memory of conversion and training, for a dataset and for one ten times as many frames.

    python benchmarks/memory.py [--frames=8] [--factor=10] [--size=256] [--steps=4]

Synthesises two fluorescence datasets of four sequences (the fourth held out
for validation), of N and factor x N frames, then runs `cellseg-convert` and
`cellseg-train` (a few steps of batch 8, validation after the epoch and of the
best checkpoint at the end included, no post-processing tuning) on each, every
run in its own process, and reads that process's peak resident set size
(ru_maxrss from wait4, the host's memory). Both tools stream their data, never
holding a dataset in memory, so the ratio between the two sizes should stay
near 1.0x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from cellseg import ctc, synthetic
from common import SCRATCH, peak, show, write

SEQUENCES = 4


def dataset(frames: int, size: int) -> str:
    root = os.path.join(SCRATCH, f"Fluo-N2DH-MEMORY-{frames}x{size}")
    per_sequence = max(1, frames // SEQUENCES)
    if not os.path.isdir(root) or len(ctc.discover(root).frames) != SEQUENCES * per_sequence:
        shutil.rmtree(root, ignore_errors=True)
        print(f"synthesising {SEQUENCES * per_sequence} frames of {size} x {size} into {root}", file=sys.stderr)
        synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=SEQUENCES, frames=per_sequence,
                                                       height=size, width=size, seed=0))
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames of the smaller dataset (N)")
    parser.add_argument("--factor", type=int, default=10, help="the larger dataset has factor x N frames")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="training steps")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "memory.json"))
    args = parser.parse_args()
    work = os.path.join(SCRATCH, "memory")
    os.makedirs(work, exist_ok=True)
    rows = []
    for frames in (args.frames, args.factor * args.frames):
        root = dataset(frames, args.size)
        records, run = os.path.join(work, f"records-{frames}"), os.path.join(work, f"run-{frames}")
        shutil.rmtree(run, ignore_errors=True)
        convert_mb, convert_s = peak("cellseg-convert", f"--input_dir={root}", f"--output_dir={records}",
                                     f"--val_sequences={SEQUENCES:02d}", "--overwrite",
                                     log=os.path.join(work, f"convert-{frames}.log"))
        with open(os.path.join(records, "dataset.json")) as handle:
            written = json.load(handle)["counts"]["written"]
        train_mb, train_s = peak("cellseg-train", f"--records_dir={records}", f"--model_dir={run}", "--epochs=1",
                                 f"--steps_per_epoch={args.steps}", f"--patch_size={args.patch}",
                                 "--per_replica_batch_size=8", "--validation_images=0", "--notune_postprocessing",
                                 log=os.path.join(work, f"train-{frames}.log"))
        for job, mb, seconds in (("conversion", convert_mb, convert_s), ("training", train_mb, train_s)):
            rows.append({"job": job, "frames": written, "peak_mb": round(mb, 1), "seconds": round(seconds, 1)})
            print(f"{job}, {written} frames: {mb:.0f} MB peak, {seconds:.1f} s", file=sys.stderr)
    ratios = {job: round(rows[i + 2]["peak_mb"] / rows[i]["peak_mb"], 2)
              for i, job in enumerate(("conversion", "training"))}
    show("memory", write(args.output_json, {"size": args.size, "patch": args.patch, "steps": args.steps,
                                            "factor": args.factor, "rows": rows, "ratios": ratios}))


if __name__ == "__main__":
    main()
