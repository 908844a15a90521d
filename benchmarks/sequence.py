"""Segmenting a time-lapse end to end: `cellseg-predict` frames/s and peak memory against the frame count.

    python benchmarks/sequence.py [--size=1024] [--frames=10,100] [--tta_frames=10]

A small model is trained for a minute on synthetic fluorescence (so that its
outputs hold cells, as a real model's do, and post-processing meets realistic
work), then `cellseg-predict` segments sequences of `--frames` synthetic
frames of `--size` x `--size` (4 distinct frames, repeated) in its own process:
reading, stretching, the network (base 16, depth 4, whole frames), instances,
cells.csv and the label TIFFs. Peak resident memory that stays flat from 10 to
100 frames shows that nothing accumulates per frame. With test-time
augmentation (8 passes) it runs `--tta_frames` frames.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from cellseg import ctc, synthetic
from common import SCRATCH, peak, show, tool, write

DISTINCT = 4


def model(work: str) -> str:
    """A run folder with a briefly trained model (made once)."""
    run = os.path.join(work, "run")
    if os.path.exists(os.path.join(run, "checkpoints", "best.keras")):
        return run
    data, records = os.path.join(work, "train-data"), os.path.join(work, "records")
    tool("cellseg-synth", "--kind=fluo", f"--output_dir={data}", "--sequences=2", "--frames=6", "--height=256",
         "--width=256", "--seed=0", "--overwrite")
    tool("cellseg-convert", f"--input_dir={data}", f"--output_dir={records}", "--val_sequences=02", "--overwrite")
    shutil.rmtree(run, ignore_errors=True)
    tool("cellseg-train", f"--records_dir={records}", f"--model_dir={run}", "--epochs=3", "--steps_per_epoch=20",
         "--patch_size=128", "--per_replica_batch_size=8", "--learning_rate=1e-3", "--validation_images=0")
    return run


def sequence(work: str, size: int, frames: int) -> str:
    """A CTC sequence folder of `frames` frames of `size` x `size`: DISTINCT synthetic frames, repeated."""
    source = os.path.join(work, f"frames-{size}")
    if not os.path.isdir(os.path.join(source, "01")):
        synthetic.write_dataset(source, synthetic.Config(kind="fluo", sequences=1, frames=DISTINCT, height=size,
                                                         width=size, seed=1))
    originals = ctc.sequence_frames(os.path.join(source, "01"))
    folder = os.path.join(work, f"sequence-{size}-{frames}", "01")
    existing = len(ctc.sequence_frames(folder)) if os.path.isdir(folder) else 0
    if existing != frames:
        shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
        os.makedirs(folder)
        for index in range(frames):
            os.link(originals[index % len(originals)], os.path.join(folder, f"t{index:03d}.tif"))
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", default="10,100", help="sequence lengths, comma-separated")
    parser.add_argument("--tta_frames", type=int, default=10, help="frames segmented with --tta (0: none)")
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "sequence.json"))
    args = parser.parse_args()
    work = os.path.join(SCRATCH, "sequence")
    os.makedirs(work, exist_ok=True)
    run = model(work)
    runs = [(int(n), False) for n in args.frames.split(",")] + ([(args.tta_frames, True)] if args.tta_frames else [])
    rows = []
    for frames, tta in runs:
        folder = sequence(work, args.size, frames)
        out = os.path.join(work, f"out-{frames}-{'tta' if tta else 'plain'}")
        shutil.rmtree(out, ignore_errors=True)
        mb, seconds = peak("cellseg-predict", f"--model={run}", f"--input={folder}", f"--output_dir={out}",
                           "--tta" if tta else "--notta", log=out + ".log")
        rows.append({"frames": frames, "tta": tta, "seconds": round(seconds, 1),
                     "frames_per_s": round(frames / seconds, 3), "peak_mb": round(mb, 1)})
        print(f"{frames} frames, tta {tta}: {frames / seconds:.2f} frames/s, {mb:.0f} MB peak", file=sys.stderr)
    plain = sorted((r for r in rows if not r["tta"]), key=lambda r: r["frames"])
    # Start-up (TensorFlow, the model) costs each run the same: the longer run's extra frames over its
    # extra seconds is the rate of a long sequence.
    steady = ((plain[-1]["frames"] - plain[0]["frames"]) / (plain[-1]["seconds"] - plain[0]["seconds"])
              if len(plain) > 1 and plain[-1]["seconds"] > plain[0]["seconds"] else None)
    show("sequence", write(args.output_json, {"size": args.size, "rows": rows,
                                              "steady_frames_per_s": steady and round(steady, 3)}))


if __name__ == "__main__":
    main()
