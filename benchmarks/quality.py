"""Segmentation quality: cellseg's default against a plain U-Net recipe and Otsu, on synthetic and real data.

    make quality                                   # or: .venv/bin/python benchmarks/quality.py
    make quality QUALITY_FLAGS=--quick             # one seed, short budget, the default only (about 25 min on 2 cores)
    .venv/bin/python benchmarks/quality.py --budgets=short --datasets=cho --seeds=0,1,2

For each dataset, the models train on sequence 01 (with a validation split
drawn from it) and are scored on sequence 02, which no training or tuning saw:

- `fluo`: synthetic fluorescent nuclei (`cellseg-synth --kind=fluo`), gold truth;
- `phc dense`: synthetic phase contrast at 2.5 times the usual density, gold truth;
- `cho`: real CHO nuclei, 8-bit fluorescence (`../shared/realdata/Fluo-N2DH-CHO-slices`,
  a published method's masks as silver truth);
- `e. coli`: a real phase-contrast E. coli colony, dark rods with bright halos, 2 to 114 cells a
  frame in 01 and 119 to 358 in 02, masks of every cell (`../shared/realdata/fetch.py bacteria`);
- `psc`: the challenge's real pancreatic stem cells in phase contrast, small and crowded, silver
  truth (`../shared/realdata/fetch.py psc`).

The two fetched datasets are built into `data/real/` when missing (`fetch.py` downloads their
source archives once). Every U-Net method trains once per seed (`--seeds`, 0 and 1 by default);
the table gives each method's mean SEG over the seeds and its spread (lowest to highest), and
the per-seed rows go to the JSON results. `--quick` trains the cellseg default only (and a
`variant` when given), one seed at the short budget: about 25 minutes for the five datasets on
2 cores (their training times in the table, and scoring); `--datasets` narrows it.
`--variant_flags` trains a third method, `variant`, with the cellseg default's flags plus
these, to measure a change before it becomes a default.

Methods, all through cellseg's own commands:

- `Otsu + watershed`: `cellseg-evaluate --baseline=otsu`;
- `plain recipe`: the U-Net of a 60-line Keras recipe: records without the
  border weight map, `--target=binary --loss=bce` (class-balanced), flips and
  quarter turns only, patches at random places only, no tuning (mask threshold 0.5; seeds are cellseg's
  h-maxima of 2 px, where the recipe used `peak_local_max(min_distance=5)`);
- `cellseg default`: every default of `cellseg-convert` and `cellseg-train`.

Budgets (the same for every method): `short`, 12 epochs of 25 steps, batch 8,
patch 128, learning rate 1e-3; `long`, four times the steps. The table goes to
docs/QUALITY.md and the README (between their table markers; the rest of each page is kept) and
to benchmarks/results/quality-<machine>.md and .json, with the machine, the
budgets and the wall time. `--reuse` scores the models of an earlier run again
without training them: the cellseg default's post-processing is tuned again on
its validation frames first (`cellseg.tuning`), so a change of post-processing
is measured on the same networks. `--combine` writes the table of earlier results files;
`--as_default` names files whose variant rows on the `--datasets` stand for the default, for a
variant that trains exactly as a new default does there (the rows it replaces are dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(ROOT, "benchmarks", "scratch", "quality")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DOC = os.path.join(ROOT, "docs", "QUALITY.md")
README = os.path.join(ROOT, "README.md")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import tool  # noqa: E402 (first: it quiets TensorFlow's start-up lines)
from pages import between_markers  # noqa: E402

import keras  # noqa: E402

from cellseg import plan, run_folder, tuning  # noqa: E402
from cellseg.records import open_records  # noqa: E402

REALDATA = os.path.join(os.path.dirname(ROOT), "shared", "realdata")
CHO = os.path.join(REALDATA, "Fluo-N2DH-CHO-slices")
FETCHED = os.path.join(ROOT, "data", "real")

DATASETS = {  # name: how to get it (synthetic kind and density, a folder, or fetch.py's name), the test truth
    "fluo": ({"kind": "fluo", "density": 1.0}, "02_GT/SEG"),
    "phc dense": ({"kind": "phc", "density": 2.5}, "02_GT/SEG"),
    "cho": ({"folder": CHO}, "02_ST/SEG"),
    "e. coli": ({"fetch": "bacteria", "folder": os.path.join(FETCHED, "PhC-E-coli-colony")}, "02_GT/SEG"),
    "psc": ({"fetch": "psc", "folder": os.path.join(FETCHED, "PhC-C2DL-PSC")}, "02_ST/SEG"),
}
BUDGETS = {"short": (12, 25), "long": (24, 50)}  # epochs, steps per epoch
COMMON = ["--patch_size=128", "--per_replica_batch_size=8", "--learning_rate=1e-3", "--validation_images=0"]
PLAIN = ["--target=binary", "--loss=bce", "--class_weight_power=1", "--elastic_sigma=0", "--rotation=0", "--scale=0",
         "--gamma=0", "--contrast=0", "--brightness=0", "--noise=0", "--notune_postprocessing", "--best_by=dice",
         "--foreground_patches=0"]


def dataset(name: str, work: str) -> str:
    """The dataset folder of `name` (synthesised into `work` when synthetic)."""
    source, _ = DATASETS[name]
    if "fetch" in source and not os.path.isdir(source["folder"]):
        subprocess.run([sys.executable, os.path.join(REALDATA, "fetch.py"), source["fetch"], FETCHED], check=True)
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


def measure(name: str, budget: str, only: list[str], seeds: list[int], variant: list[str],
            reuse: bool = False) -> list[dict]:
    """One row per method and seed (Otsu's once), each with its SEG on sequence 02."""
    work = os.path.join(SCRATCH, name.replace(" ", "-").replace(".", ""))
    os.makedirs(work, exist_ok=True)
    data = dataset(name, work)
    _, truth = DATASETS[name]
    epochs, steps = BUDGETS[budget]
    rows = []
    methods = {"plain recipe": (records(data, work, False), PLAIN, ["--mask_threshold=0.5", "--notta"]),
               "cellseg default": (records(data, work, True), [], []),
               "variant": (records(data, work, True), variant, [])}
    for method, (converted, flags, predict_flags) in methods.items():
        if method not in only:
            continue
        for seed in seeds:
            suffix = f"-seed{seed}" if seed else ""  # seed 0 keeps the folder names of earlier runs
            run = os.path.join(work, f"{budget}-{method.replace(' ', '-')}{suffix}")
            timing = os.path.join(run, "train_seconds.txt")
            if reuse and os.path.exists(timing):  # scored again with today's prediction, not trained again
                seconds = float(open(timing).read())
                if method != "plain recipe":  # its post-processing tuned again, as training would today
                    best = keras.models.load_model(os.path.join(run, run_folder.BEST), compile=False)
                    tuning.tune(best, open_records(converted, plan.planned_value(run, "input_scale", 1.0)), run)
            else:
                shutil.rmtree(run, ignore_errors=True)
                start = time.monotonic()
                tool("cellseg-train", f"--records_dir={converted}", f"--model_dir={run}", f"--epochs={epochs}",
                     f"--steps_per_epoch={steps}", *COMMON, f"--seed={seed}", *flags)
                seconds = time.monotonic() - start
                with open(timing, "w") as handle:
                    handle.write(f"{seconds:.1f}\n")
            report = score(run, data, truth, predict_flags)
            if not rows:
                rows.append({"dataset": name, "budget": budget, "method": "Otsu + watershed", **report["otsu"]})
            rows.append({"dataset": name, "budget": budget, "method": method, "seed": seed,
                         "train_s": round(seconds), **report["cellseg"]})
            print(f"{name}, {budget}, {method}, seed {seed}: SEG {report['cellseg']['seg']:.3f} "
                  f"(train {seconds:.0f} s)", flush=True)
    return rows


SCORES = ("seg", "f1", "precision", "recall", "pixel_dice")


def summarise(rows: list[dict]) -> list[dict]:
    """Per dataset, budget and method: the mean of each score over the seeds, SEG's lowest and highest."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["budget"], row["method"]), []).append(row)
    summary = []
    for (name, budget, method), members in groups.items():
        segs = [m["seg"] for m in members]
        summary.append({"dataset": name, "budget": budget, "method": method, "seeds": len(members),
                        **{key: statistics.fmean(m[key] for m in members) for key in SCORES},
                        "seg_min": min(segs), "seg_max": max(segs),
                        "train_s": round(statistics.fmean(m["train_s"] for m in members)) if "train_s" in members[0]
                        else ""})
    return summary


def table(summary: list[dict]) -> str:
    lines = ["| dataset | budget | method | seeds | SEG (mean) | SEG spread | F1 | precision | recall | pixel Dice | "
             "train s |",
             "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in summary:
        spread = f"{r['seg_min']:.3f} - {r['seg_max']:.3f}" if r["seeds"] > 1 else ""
        lines.append(f"| {r['dataset']} | {r['budget']} | {r['method']} | {r['seeds'] if r['train_s'] != '' else ''} "
                     f"| {r['seg']:.3f} | {spread} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['pixel_dice']:.3f} | {r['train_s']} |")
    return "\n".join(lines)


def verdict(summary: list[dict]) -> str:
    """Each budget's margin of the cellseg default (and the variant) over the plain recipe, per dataset and in
    the mean over datasets."""
    lines = []
    for budget in dict.fromkeys(r["budget"] for r in summary):
        seg = {(r["dataset"], r["method"]): r["seg"] for r in summary if r["budget"] == budget}
        names = list(dict.fromkeys(d for d, _ in seg))
        for method in ("cellseg default", "variant"):
            if not all((d, method) in seg for d in names):
                continue
            mean = statistics.fmean(seg[d, method] for d in names)
            text = f"{budget}, {method}: mean SEG {mean:.3f} over {len(names)} dataset(s)"
            if all((d, "plain recipe") in seg for d in names):
                margins = {d: seg[d, method] - seg[d, "plain recipe"] for d in names}
                worst = min(margins, key=margins.get)
                text += f"; margin over the plain recipe: smallest {margins[worst]:+.3f} ({worst})"
            if method == "variant" and all((d, "cellseg default") in seg for d in names):
                change = {d: seg[d, "variant"] - seg[d, "cellseg default"] for d in names}
                worst = min(change, key=change.get)
                text += (f"; against the default: mean {statistics.fmean(change.values()):+.3f}, "
                         f"worst {change[worst]:+.3f} ({worst})")
            lines.append(f"- {text}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--budgets", default=",".join(BUDGETS), help="comma-separated: " + ", ".join(BUDGETS))
    parser.add_argument("--methods", default="", help="comma-separated U-Net methods (plain recipe, cellseg "
                        "default, variant); default: the first two, the default only with --quick")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument("--quick", action="store_true", help="one seed (the first of --seeds), the short budget, the "
                        "cellseg default only")
    parser.add_argument("--variant_flags", default="", help="cellseg-train flags of the `variant` method, added to "
                        "the default's (one string, quoted as in a shell)")
    parser.add_argument("--output", default="", help="results file name (default: quality-<machine>)")
    parser.add_argument("--reuse", action="store_true", help="score the models of earlier runs again (their "
                        "train_seconds.txt says how long they trained) instead of training them again; the "
                        "U-Net's post-processing is tuned again first")
    parser.add_argument("--combine", default="", help="comma-separated results files (benchmarks/results/*.json "
                        "of earlier runs, e.g. one per budget): their rows in one table, written as a run's")
    parser.add_argument("--as_default", default="", help="with --combine: comma-separated results files whose "
                        "variant rows of the --datasets stand for the cellseg default (a variant that trains as "
                        "the default now does on those datasets); they replace the default's rows of the same "
                        "dataset and budget")
    args = parser.parse_args()
    names, budgets = args.datasets.split(","), args.budgets.split(",")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.quick:
        budgets, seeds = ["short"], seeds[:1]
    methods = (args.methods or ("cellseg default" if args.quick else "plain recipe,cellseg default")).split(",")
    if args.variant_flags and "variant" not in methods:
        methods.append("variant")
    unknown = [n for n in names if n not in DATASETS] + [b for b in budgets if b not in BUDGETS]
    if unknown:
        sys.exit(f"quality: unknown dataset or budget {', '.join(unknown)}")
    variant = shlex.split(args.variant_flags)
    started, earlier = time.monotonic(), 0.0
    if args.as_default and not args.combine:
        sys.exit("quality: --as_default needs --combine")
    if args.combine:
        rows, seeds, budgets, earlier, variant = combined(args.combine.split(","),
                                                          [p for p in args.as_default.split(",") if p], names)
        args.variant_flags = shlex.join(variant)
    else:
        rows = [row for name in names for budget in budgets
                for row in measure(name, budget, methods, seeds, variant, args.reuse)]
    summary = summarise(rows)
    machine = args.output or f"quality-{platform.machine()}-{os.cpu_count()}cpu"
    minutes = earlier + (time.monotonic() - started) / 60
    text = (f"Trained on sequence 01, scored on sequence 02 (`benchmarks/quality.py`), on "
            f"{platform.processor() or platform.machine()} ({machine}), {os.cpu_count()} cores, no GPU, "
            f"{time.strftime('%Y-%m-%d')}; seeds {', '.join(map(str, seeds))}; budgets: "
            + "; ".join(f"{b} = {BUDGETS[b][0]} epochs of {BUDGETS[b][1]} steps" for b in budgets)
            + ", batch 8, patch 128 for every method (cellseg's plan derives its other settings for that patch), "
            "learning rate 1e-3."
            + (f" Variant: the default with `{args.variant_flags}`." if variant else "")
            + f" Wall time {minutes:.0f} min"
            + (" (models of an earlier run, post-processing tuned and scored again)" if args.reuse else "")
            + (f" in all, combined from {args.combine}" if args.combine else "")
            + (f"; the default's rows of {', '.join(sorted({r['dataset'] for r in rows if r.get('as_default')}))} are "
               f"the variant's of {args.as_default}" if args.as_default else "")
            + f".\n\n{table(summary)}\n\n{verdict(summary)}\n")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{machine}.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(RESULTS, f"{machine}.json"), "w") as handle:
        json.dump({"machine": machine, "minutes": round(minutes, 1), "seeds": seeds, "variant": args.variant_flags,
                   "summary": summary, "rows": rows}, handle, indent=2)
    if not args.output:
        write_doc(text)
    print("\n" + text)


def _read_json(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)


def combined(paths: list[str], as_default: list[str] = (), names: list[str] = ()) -> tuple[
        list[dict], list[int], list[str], float, list[str]]:
    """The rows of earlier results files, sorted by dataset, budget and method as a run writes them; their seeds,
    budgets, minutes and variant flags. Otsu's rows, the same in every file, are kept once per dataset and
    budget. The variant rows of the `as_default` files on the datasets `names` become the default's, in place of
    every default row of their dataset and budget."""
    files = {path: _read_json(path) for path in [*as_default, *paths]}
    minutes = sum(results["minutes"] for results in files.values())
    rows = [{**row, "method": "cellseg default", "as_default": True} for path in as_default
            for row in files[path]["rows"] if row["method"] == "variant" and row["dataset"] in names]
    covered = {(row["dataset"], row["budget"]) for row in rows}
    seen = {(row["dataset"], row["budget"], row["method"], row.get("seed")) for row in rows}
    variant = ""
    for path in paths:
        variant = variant or files[path].get("variant", "")
        for row in files[path]["rows"]:
            if row["method"] == "cellseg default" and (row["dataset"], row["budget"]) in covered:
                continue
            key = (row["dataset"], row["budget"], row["method"], row.get("seed"))
            if key not in seen:
                seen.add(key)
                rows.append(row)
    order = {name: i for i, name in enumerate([*DATASETS, *BUDGETS, "Otsu + watershed", "plain recipe",
                                                "cellseg default", "variant"])}
    rows.sort(key=lambda r: (order.get(r["dataset"], 99), order.get(r["budget"], 99), order.get(r["method"], 99),
                             r.get("seed", -1)))
    seeds = sorted({r["seed"] for r in rows if "seed" in r})
    budgets = [b for b in BUDGETS if any(r["budget"] == b for r in rows)]
    return rows, seeds, budgets, minutes, shlex.split(variant)


def write_doc(text: str) -> None:
    """Put `text` between the table markers of docs/QUALITY.md (the page is made when missing) and of the
    README's *Quality* section."""
    between_markers(DOC, text, "quality", "Segmentation quality")
    between_markers(README, text, "quality", "cellseg")


if __name__ == "__main__":
    main()
