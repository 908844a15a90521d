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
from formats import FORMATS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
BEGIN, END = "<!-- bench: begin -->", "<!-- bench: end -->"


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
