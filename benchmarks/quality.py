"""Segmentation quality: cellseg's default against a plain U-Net recipe and Otsu, on synthetic and real data.

    make quality                                   # or: .venv/bin/python benchmarks/quality.py
    .venv/bin/python benchmarks/quality.py --budgets=short --datasets=cho

For each dataset, the models train on sequence 01 (with a validation split
drawn from it) and are scored on sequence 02, which no training or tuning saw:

- `fluo`: synthetic fluorescent nuclei (`cellseg-synth --kind=fluo`), gold truth;
- `phc dense`: synthetic phase contrast at 2.5 times the usual density, gold truth;
- `cho`: real CHO nuclei, 8-bit fluorescence (`../shared/realdata/Fluo-N2DH-CHO-slices`,
  a published method's masks as silver truth).

Methods, all through cellseg's own commands:

- `Otsu + watershed`: `cellseg-evaluate --baseline=otsu`;
- `plain recipe`: the U-Net of a 60-line Keras recipe: records without the
  border weight map, `--target=binary --loss=bce` (class-balanced), flips and
  quarter turns only, no tuning (mask threshold 0.5; seeds are cellseg's
  h-maxima of 2 px, where the recipe used `peak_local_max(min_distance=5)`);
- `cellseg default`: every default of `cellseg-convert` and `cellseg-train`.

Budgets (the same for every method): `short`, 12 epochs of 25 steps, batch 8,
patch 128, learning rate 1e-3; `long`, four times the steps. The table goes to
docs/QUALITY.md (between its table markers; the rest of that page is kept) and
to benchmarks/results/quality-<machine>.md and .json, with the machine, the
budgets and the wall time. `--reuse` scores the models of an earlier run again
without training them: the cellseg default's post-processing is tuned again on
its validation frames first (`cellseg.tuning`), so a change of post-processing
is measured on the same networks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(ROOT, "benchmarks", "scratch", "quality")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOC = os.path.join(ROOT, "docs", "QUALITY.md")
BEGIN, END = "<!-- quality: begin -->", "<!-- quality: end -->"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import tool  # noqa: E402 (first: it quiets TensorFlow's start-up lines)

import keras  # noqa: E402

from cellseg import run_folder, tuning  # noqa: E402
from cellseg.data import open_records  # noqa: E402 (`data` names a dataset folder here)

CHO = os.path.join(os.path.dirname(ROOT), "shared", "realdata", "Fluo-N2DH-CHO-slices")

DATASETS = {  # name: how to get it (synthetic kind and density, or a folder), the test truth folder
    "fluo": ({"kind": "fluo", "density": 1.0}, "02_GT/SEG"),
    "phc dense": ({"kind": "phc", "density": 2.5}, "02_GT/SEG"),
    "cho": ({"folder": CHO}, "02_ST/SEG"),
}
BUDGETS = {"short": (12, 25), "long": (24, 50)}  # epochs, steps per epoch
COMMON = ["--patch_size=128", "--per_replica_batch_size=8", "--learning_rate=1e-3", "--validation_images=0",
          "--seed=0"]
PLAIN = ["--target=binary", "--loss=bce", "--class_weight_power=1", "--elastic_sigma=0", "--rotation=0", "--scale=0",
         "--gamma=0", "--contrast=0", "--brightness=0", "--noise=0", "--notune_postprocessing", "--best_by=dice"]


def dataset(name: str, work: str) -> str:
    """The dataset folder of `name` (synthesised into `work` when synthetic)."""
    source, _ = DATASETS[name]
    if "folder" in source:
        if not os.path.isdir(source["folder"]):
            sys.exit(f"quality: {source['folder']}: no such folder (the real development data)")
        return source["folder"]
    folder = os.path.join(work, {"fluo": "Fluo-N2DH-SYNTH", "phc": "PhC-C2DL-SYNTH"}[source["kind"]])
    if not os.path.isdir(folder):
        tool("cellseg-synth", f"--kind={source['kind']}", f"--density={source['density']}", f"--output_dir={folder}",
             "--sequences=2", "--frames=12", "--height=256", "--width=256", "--seed=0")
    return folder


def records(data: str, work: str, weight_map: bool) -> str:
    """Sequence 01 converted, about a third of its frames for validation (the converter's hash split: 3 of
    CHO's 10)."""
    out = os.path.join(work, "records" if weight_map else "records-plain")
    if not os.path.exists(os.path.join(out, "dataset.json")):
        tool("cellseg-convert", f"--input_dir={data}", f"--output_dir={out}", "--sequences=01", "--val_fraction=0.3",
             "--overwrite", *([] if weight_map else ["--noweight_map"]))
    return out


def score(run: str, data: str, truth: str, extra: list[str]) -> dict:
    """Segment sequence 02 with the run's model and score it against `truth` (with the Otsu baseline)."""
    predictions = os.path.join(run, "predictions")
    tool("cellseg-predict", f"--model={run}", f"--input={os.path.join(data, '02')}", f"--output_dir={predictions}",
         *extra)
    report = os.path.join(run, "evaluation.json")
    tool("cellseg-evaluate", f"--pred={os.path.join(predictions, '02_RES')}", f"--gt={os.path.join(data, truth)}",
         "--baseline=otsu", f"--images={os.path.join(data, '02')}", f"--output_json={report}")
    with open(report) as handle:
        return json.load(handle)


def measure(name: str, budget: str, only: list[str], reuse: bool = False) -> list[dict]:
    work = os.path.join(SCRATCH, name.replace(" ", "-"))
    os.makedirs(work, exist_ok=True)
    data = dataset(name, work)
    _, truth = DATASETS[name]
    epochs, steps = BUDGETS[budget]
    rows = []
    methods = {"plain recipe": (records(data, work, False), PLAIN, ["--mask_threshold=0.5", "--notta"]),
               "cellseg default": (records(data, work, True), [], [])}
    for method, (converted, flags, predict_flags) in methods.items():
        if method not in only:
            continue
        run = os.path.join(work, f"{budget}-{method.replace(' ', '-')}")
        timing = os.path.join(run, "train_seconds.txt")
        if reuse and os.path.exists(timing):  # scored again with today's prediction, not trained again
            seconds = float(open(timing).read())
            if method == "cellseg default":  # its post-processing tuned again, as training would today
                best = keras.models.load_model(os.path.join(run, run_folder.BEST), compile=False)
                tuning.tune(best, open_records(converted), run)
        else:
            shutil.rmtree(run, ignore_errors=True)
            start = time.monotonic()
            tool("cellseg-train", f"--records_dir={converted}", f"--model_dir={run}", f"--epochs={epochs}",
                 f"--steps_per_epoch={steps}", *COMMON, *flags)
            seconds = time.monotonic() - start
            with open(timing, "w") as handle:
                handle.write(f"{seconds:.1f}\n")
        report = score(run, data, truth, predict_flags)
        if not rows:
            rows.append({"dataset": name, "budget": budget, "method": "Otsu + watershed", **report["otsu"]})
        rows.append({"dataset": name, "budget": budget, "method": method, "train_s": round(seconds), **report["cellseg"]})
        print(f"{name}, {budget}, {method}: SEG {report['cellseg']['seg']:.3f} (train {seconds:.0f} s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| dataset | budget | method | SEG | F1 | precision | recall | pixel Dice | train s |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['budget']} | {r['method']} | {r['seg']:.3f} | {r['f1']:.3f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['pixel_dice']:.3f} | {r.get('train_s', '')} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--budgets", default=",".join(BUDGETS), help="comma-separated: " + ", ".join(BUDGETS))
    parser.add_argument("--methods", default="plain recipe,cellseg default", help="comma-separated U-Net methods")
    parser.add_argument("--output", default="", help="results file name (default: quality-<machine>)")
    parser.add_argument("--reuse", action="store_true", help="score the models of earlier runs again (their "
                        "train_seconds.txt says how long they trained) instead of training them again; the "
                        "cellseg default's post-processing is tuned again first")
    args = parser.parse_args()
    names, budgets = args.datasets.split(","), args.budgets.split(",")
    unknown = [n for n in names if n not in DATASETS] + [b for b in budgets if b not in BUDGETS]
    if unknown:
        sys.exit(f"quality: unknown dataset or budget {', '.join(unknown)}")
    started = time.monotonic()
    rows = [row for name in names for budget in budgets for row in measure(name, budget, args.methods.split(","), args.reuse)]
    machine = args.output or f"quality-{platform.machine()}-{os.cpu_count()}cpu"
    minutes = (time.monotonic() - started) / 60
    text = (f"Trained on sequence 01, scored on sequence 02 (`benchmarks/quality.py`), on "
            f"{platform.processor() or platform.machine()} ({machine}), {os.cpu_count()} cores, no GPU, "
            f"{time.strftime('%Y-%m-%d')}; seed 0; budgets: "
            + "; ".join(f"{b} = {BUDGETS[b][0]} epochs of {BUDGETS[b][1]} steps" for b in budgets)
            + f", batch 8, patch 128, learning rate 1e-3. Wall time {minutes:.0f} min"
            + (" (models of an earlier run, post-processing tuned and scored again)" if args.reuse else "")
            + f".\n\n{table(rows)}\n")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{machine}.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(RESULTS, f"{machine}.json"), "w") as handle:
        json.dump({"machine": machine, "minutes": round(minutes, 1), "rows": rows}, handle, indent=2)
    if not args.output:
        write_doc(text)
    print("\n" + text)


def write_doc(text: str) -> None:
    """Put `text` between docs/QUALITY.md's table markers (the page is made when missing)."""
    page = open(DOC).read() if os.path.exists(DOC) else f"# Segmentation quality\n\n{BEGIN}\n{END}\n"
    if BEGIN not in page or END not in page:
        sys.exit(f"quality: {DOC} lacks the markers {BEGIN} and {END}")
    head, rest = page.split(BEGIN, 1)
    with open(DOC, "w") as handle:
        handle.write(f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    main()
