"""Gather the benchmarks' scratch JSONs into benchmarks/results/<machine>.json and .md, and into the README.

    python benchmarks/report.py [--bench_started=EPOCH_SECONDS] [--readme=README.md]

The machine is the one named by the scratch results themselves (`common.slug`:
x86_64-2cpu, x86_64-16cpu-nvidia-h100, ...); results from another machine or
from an older version of the benchmarks are left out with a warning. The README
text between its bench markers becomes a line naming the machine and the date,
followed by the tables.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

from common import SCRATCH

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
BEGIN, END = "<!-- bench: begin -->", "<!-- bench: end -->"


def number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def table(header: list[str], rows: list[list], right: int = 1) -> str:
    """A markdown table; columns from `right` on are right-aligned numbers."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = [header, align, *[[str(cell) for cell in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def convert(r: dict) -> tuple[str, str]:
    return (f"Conversion (`convert.py`): {r['frames']} synthetic {r['size']} x {r['size']} frames, {r['device']}",
            table(["variant", "compression", "frames/s", "ratio to the loop", "MB per frame"],
                  [[x["variant"], x["compression"], f"{x['frames_per_s']:.1f}", f"{x['ratio']:.2f}",
                    f"{x['mb_per_frame']:.2f}"] for x in r["rows"]], right=2))


def input_pipeline(r: dict) -> tuple[str, str]:
    return (f"Input pipeline (`input_pipeline.py`): {r['patch']} x {r['patch']} patches from {r['frames']} "
            f"{r['size']} x {r['size']} frames, batch {r['batch']}, {r['device']}",
            table(["variant", "images/s", "ratio to the numpy/scipy generator (c)"],
                  [[x["variant"], number(x["images_per_s"]), f"{x['ratio_to_c']:.1f}"] for x in r["rows"]]))


def training(r: dict) -> tuple[str, str]:
    cells = collections.defaultdict(dict)
    for x in r["rows"]:
        cells[(x["base_filters"], x["size"], x["batch"])][x["jit_compile"]] = number(x["images_per_s"])
    precision = ", mixed precision" if r.get("mixed_precision") else ""
    return (f"Training step (`training.py`): images/s of augmentation, forward, backward and update on a batch "
            f"in memory, {r['device']}{precision}",
            table(["base filters", "patch", "batch", "images/s, XLA off", "images/s, XLA on"],
                  [[base, size, batch, jit.get(False, "-"), jit.get(True, "-")]
                   for (base, size, batch), jit in cells.items()]))


def inference(r: dict) -> tuple[str, str]:
    return (f"Inference (`inference.py`): ms per frame, overlap-tile prediction (tile {r['tile']}, overlap "
            f"{r['overlap']}, base {r['base_filters']}, {r['batch']} tiles per batch) and post-processing, "
            f"{r['device']}",
            table(["frame", "tiles", "network ms", "post-processing ms, binary", "post-processing ms, three_class"],
                  [[f"{x['size']} x {x['size']}", x["tiles"], f"{x['predict_ms']:.0f}",
                    f"{x['postprocess_binary_ms']:.0f}", f"{x['postprocess_three_class_ms']:.0f}"]
                   for x in r["rows"]]))


def memory(r: dict) -> tuple[str, str]:
    rows, jobs = r["rows"], ("conversion", "training")
    small, large = rows[0]["frames"], rows[2]["frames"]
    return (f"Peak resident memory (`memory.py`): `cellseg-convert` and `cellseg-train` ({r['steps']} steps, "
            f"patch {r['patch']}, validation included) on {r['size']} x {r['size']} frames, each run in its own "
            f"process, {r['device']}",
            table(["job", f"{small} frames, MB", f"{large} frames, MB", "ratio"],
                  [[job, f"{rows[i]['peak_mb']:.0f}", f"{rows[i + 2]['peak_mb']:.0f}", f"{r['ratios'][job]:.2f}x"]
                   for i, job in enumerate(jobs)]))


FORMATS = {"convert": convert, "input_pipeline": input_pipeline, "training": training, "inference": inference,
           "memory": memory}


def load(scratch: str) -> dict:
    """The scratch results of this machine, by section (the machine most of them name)."""
    found = {}
    for name in FORMATS:
        path = os.path.join(scratch, f"{name}.json")
        if not os.path.exists(path):
            print(f"report: no {path}; run benchmarks/{name}.py", file=sys.stderr)
            continue
        with open(path) as handle:
            result = json.load(handle)
        if not isinstance(result.get("machine"), dict):
            print(f"report: {path} is from an older version of the benchmarks; run it again", file=sys.stderr)
            continue
        found[name] = result
    if not found:
        sys.exit("report: no benchmark results in " + scratch)
    slug = collections.Counter(r["machine"]["slug"] for r in found.values()).most_common(1)[0][0]
    for name in [n for n, r in found.items() if r["machine"]["slug"] != slug]:
        print(f"report: leaving out {name}.json, measured on {found.pop(name)['machine']['slug']}", file=sys.stderr)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench_started", type=float, default=0.0, help="when `make bench` started (epoch s)")
    parser.add_argument("--scratch", default=SCRATCH, help="where the benchmarks wrote their JSON")
    parser.add_argument("--results", default=RESULTS, help="where <machine>.json and .md go")
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"), help="'' leaves the README alone")
    args = parser.parse_args()
    found = load(args.scratch)
    machine = next(iter(found.values()))["machine"]
    date = max(r["date"] for r in found.values())
    seconds = round(time.time() - args.bench_started) if args.bench_started else None
    gpus = ", ".join(f"{n} x {g}" for g, n in collections.Counter(machine["gpus"]).items()) or "no GPU"
    took = f", `make bench` took {seconds / 60:.1f} min" if seconds else ""
    headline = (f"Measured on `{machine['slug']}` ({machine['cpu']}, {machine['cores']} cores, {gpus}; "
                f"TensorFlow {machine['tensorflow']}) on {date[:10]}{took}.")
    blocks = [f"**{caption}.**\n\n{body}" for caption, body in
              (FORMATS[name](found[name]) for name in FORMATS if name in found)]
    body = "\n\n".join(blocks)
    os.makedirs(args.results, exist_ok=True)
    stem = os.path.join(args.results, machine["slug"])
    with open(stem + ".json", "w") as handle:
        json.dump({"machine": machine, "date": date, "bench_seconds": seconds, "results": found}, handle, indent=2)
    with open(stem + ".md", "w") as handle:
        handle.write(f"# Benchmarks on {machine['slug']}\n\n{headline}\n\n{body}\n")
    print(f"{headline}\n\n{body}\n\nwritten: {stem}.json, {stem}.md")
    if args.readme:
        with open(args.readme) as handle:
            text = handle.read()
        if BEGIN not in text or END not in text:
            sys.exit(f"report: {args.readme} has no {BEGIN} ... {END} markers")
        link = f"[benchmarks/results/{machine['slug']}.md](benchmarks/results/{machine['slug']}.md)"
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{headline} Results: {link}.\n\n{body}\n{END}{rest.split(END, 1)[1]}"
        with open(args.readme, "w") as handle:
            handle.write(text)
        print(f"and the README between its bench markers: {args.readme}")


if __name__ == "__main__":
    main()
