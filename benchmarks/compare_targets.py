"""Which target separates touching cells best? Train binary, three_class and distance on the same data.

    make compare-targets                      # or: .venv/bin/python benchmarks/compare_targets.py

For each of two synthetic datasets with crowded, touching cells (phase contrast
at 2.5 times the usual density; fluorescent nuclei at twice), the script
synthesises two sequences, converts them (sequence 02 held out), trains one
model per target with the same budget, seeds and flags, lets each tune its
post-processing on the held-out frames' records, segments sequence 02 with
`cellseg-predict` and scores it against the gold truth with `cellseg-evaluate`'s
scorer. It prints the table and writes it into docs/TARGETS.md between the
results markers, with the machine and the budget.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cellseg import evaluate  # noqa: E402
from common import tool  # noqa: E402

DATASETS = {  # name: (kind, density)
    "PhC dense": ("phc", 2.5),
    "Fluo touching": ("fluo", 2.0),
}
TARGETS = ("binary", "three_class", "distance")
BEGIN, END = "<!-- results: begin -->", "<!-- results: end -->"

_WORK = flags.DEFINE_string("work_dir", os.path.join(ROOT, "benchmarks", "scratch", "targets"), "Scratch folder.")
_DOC = flags.DEFINE_string("doc", os.path.join(ROOT, "docs", "TARGETS.md"), "Markdown file that receives the table.")
_FRAMES = flags.DEFINE_integer("frames", 12, "Frames per sequence.")
_SIZE = flags.DEFINE_integer("size", 256, "Frame side in pixels.")
_EPOCHS = flags.DEFINE_integer("epochs", 6, "Epochs per model.")
_STEPS = flags.DEFINE_integer("steps_per_epoch", 25, "Steps per epoch.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the data and of every training run.")
_ONLY = flags.DEFINE_list("targets", list(TARGETS), "Targets to train (the table keeps earlier rows of the others).")
_DATASETS = flags.DEFINE_list("datasets", list(DATASETS), "Datasets to use (none: only rewrite the table).")


def train_flags() -> list[str]:
    return [f"--epochs={_EPOCHS.value}", f"--steps_per_epoch={_STEPS.value}", "--patch_size=128",
            "--per_replica_batch_size=8", "--learning_rate=1e-3", f"--seed={_SEED.value}", "--validation_images=0"]


def compare_one(name: str, kind: str, density: float) -> list[dict]:
    slug = name.lower().replace(" ", "-")
    data_dir = os.path.join(_WORK.value, "data", slug)
    records = os.path.join(_WORK.value, "records", slug)
    tool("cellseg-synth", f"--kind={kind}", f"--density={density}", f"--output_dir={data_dir}", "--sequences=2",
         f"--frames={_FRAMES.value}", f"--height={_SIZE.value}", f"--width={_SIZE.value}", f"--seed={_SEED.value}",
         "--overwrite")
    tool("cellseg-convert", f"--input_dir={data_dir}", f"--output_dir={records}", "--val_sequences=02", "--overwrite",
         "--distance_maps")
    rows = []
    for target in _ONLY.value:
        run_dir = os.path.join(_WORK.value, "runs", slug, target)
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.monotonic()
        tool("cellseg-train", f"--records_dir={records}", f"--model_dir={run_dir}", f"--target={target}",
             *train_flags())
        seconds = time.monotonic() - start
        tool("cellseg-predict", f"--model={run_dir}", f"--input={os.path.join(data_dir, '02')}",
             f"--output_dir={os.path.join(run_dir, 'predictions')}")
        report = evaluate.evaluate(os.path.join(run_dir, "predictions", "02_RES"),
                                   os.path.join(data_dir, "02_GT", "SEG"))["cellseg"]
        tuned = json.load(open(os.path.join(run_dir, "postprocess.json")))
        row = {"data": name, "target": target, "seg": report["seg"], "f1": report["f1"],
               "pixel_dice": report["pixel_dice"], "tuned": tuned, "train_seconds": seconds}
        print(f"{name:<14} {target:<12} SEG {row['seg']:.3f}  F1 {row['f1']:.3f}  Dice {row['pixel_dice']:.3f}  "
              f"({seconds:.0f} s)", flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| data | target | SEG | F1 | pixel Dice | tuned mask / seed / min size | SEG on validation records |",
             "| --- | --- | ---: | ---: | ---: | --- | ---: |"]
    for row in rows:
        t = row["tuned"]
        seed = f"peaks {t['seed_threshold']:g}" if t.get("seed_peaks") else f"{t['seed_threshold']:g}"
        lines.append(f"| {row['data']} | {row['target']} | {row['seg']:.3f} | {row['f1']:.3f} | "
                     f"{row['pixel_dice']:.3f} | {t['mask_threshold']:g} / {seed} / "
                     f"{t['min_size']} | {t['seg']:.3f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    # Rows of an earlier run stay unless this run measures them again.
    saved = os.path.join(_WORK.value, "results.json")
    rows = json.load(open(saved)) if os.path.exists(saved) else []
    for name in _DATASETS.value:
        for row in compare_one(name, *DATASETS[name]):
            rows = [r for r in rows if (r["data"], r["target"]) != (row["data"], row["target"])] + [row]
    order = {(name, target): i for i, (name, target) in
             enumerate((name, target) for name in DATASETS for target in TARGETS)}
    rows.sort(key=lambda r: order[(r["data"], r["target"])])
    cores = os.cpu_count()
    text = (f"Measured on {platform.machine()} with {cores} CPU cores, no GPU; {_EPOCHS.value} epochs x "
            f"{_STEPS.value} steps of 8 patches of 128 px per model, learning rate 1e-3, seed {_SEED.value}; "
            f"{_FRAMES.value} frames of {_SIZE.value} px per sequence, sequence 02 held out and scored "
            f"against its gold truth.\n\n{table(rows)}")
    print("\n" + text)
    with open(saved, "w") as handle:
        json.dump(rows, handle, indent=2)
    if os.path.exists(_DOC.value):
        doc = open(_DOC.value).read()
        if BEGIN in doc and END in doc:
            doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", doc,
                         flags=re.S)
            with open(_DOC.value, "w") as handle:
                handle.write(doc)
            print(f"\nwrote the table into {_DOC.value}")


if __name__ == "__main__":
    app.run(main)
