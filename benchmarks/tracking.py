"""Tracking: linking quality on truth masks (TRA, LNK, divisions) and frames/s at a crowded colony's density.

    .venv/bin/python benchmarks/tracking.py            # or with --skip_synthetic, --repeats=3

`cellseg-track`'s linker (`cellseg.tracking`) is given the truth masks
themselves, so that every error is a linking error:

- `colony 01`, `colony 02`: the E. coli colony in phase contrast
  (`data/real/PhC-E-coli-colony`, built by `../shared/realdata/fetch.py bacteria
  data/real`; skipped with a message when absent): 01 grows from 2 to 114
  cells over 40 frames, 02 from 119 to 358 over 13 frames, cells moving up to
  60 px a frame at the colony's edge, with a stage jump of 34 px; and the same
  with 3 % of the cells of every frame erased at random (missed detections:
  gaps to close, scored against the whole truth);
- `fluo`, `phc`, `phc dense`: `cellseg-synth` truth (nuclei; phase contrast; at
  2.5 times its density), both sequences.

Scores are py-ctcmetrics' TRA, DET and LNK (`cellseg.evaluate.tracking_scores`);
`divisions` counts the truth's divisions found whole: the mother's track ends
where hers does and both daughters' tracks name it as parent. Speed is the
linker alone on frames already in memory (reading and writing TIFFs aside),
best of `--repeats`, over colony 02 and on its densest frame (358 cells); the
table's last column is `track_folder` whole (reading, checking and writing the
TIFFs too), once.
The table goes to benchmarks/results/tracking-<machine>.md and .json and to
docs/TRACKING.md (between its table markers).
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import platform
import shutil
import sys
import time

import numpy as np

from cellseg import ctc, evaluate, synthetic, tiff, tracking

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pages import between_markers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(ROOT, "benchmarks", "scratch", "tracking")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
COLONY = os.path.join(ROOT, "data", "real", "PhC-E-coli-colony")
DOC = os.path.join(ROOT, "docs", "TRACKING.md")
MISSED = 0.03  # of the cells erased from each frame of the colony's truth: detections a segmentation missed
SYNTHETIC = {"fluo": ("fluo", 1.0), "phc": ("phc", 1.0), "phc dense": ("phc", 2.5)}


def divisions(result: str, truth_tra: str) -> tuple[int, int, int]:
    """(truth divisions found whole, truth divisions, divisions in the result) of a tracked result folder."""
    truth = {label: (first, last, parent) for label, first, last, parent in
             ctc.read_tracks(os.path.join(truth_tra, "man_track.txt"))}
    found = {label: (first, last, parent) for label, first, last, parent in
             ctc.read_tracks(os.path.join(result, ctc.TRACKS))}
    daughters: dict[int, list[int]] = {}
    for label, (_, _, parent) in truth.items():
        if parent:
            daughters.setdefault(parent, []).append(label)
    truth_masks, result_masks = ctc.masks_by_index(truth_tra), ctc.masks_by_index(result)
    read = functools.lru_cache(maxsize=8)(tiff.read)

    def matched(label: int, frame: int) -> int:
        """The result's label covering most (over half) of the truth's `label` in `frame`; 0 when none."""
        cell = read(truth_masks[frame]) == label
        votes = np.bincount(read(result_masks[frame])[cell].astype(np.int64))
        votes[0] = 0
        return int(np.argmax(votes)) if votes.max(initial=0) > cell.sum() / 2 else 0

    whole = 0
    pairs = {mother: pair for mother, pair in daughters.items() if len(pair) == 2}
    for mother, pair in sorted(pairs.items(), key=lambda item: truth[item[0]][1]):  # frame by frame
        end = truth[mother][1]
        mother_found = matched(mother, end)
        found_pair = [matched(d, truth[d][0]) for d in pair]
        whole += bool(mother_found and all(found_pair) and found_pair[0] != found_pair[1]
                      and found[mother_found][1] == end and all(found[d][2] == mother_found for d in found_pair))
    children = collections.Counter(parent for _, _, parent in found.values() if parent)
    return whole, len(pairs), sum(1 for count in children.values() if count >= 2)  # one child: a gap


def score(name: str, truth_tra: str, source: str | None = None) -> dict:
    """Track the label images of `source` (default: the truth masks of `truth_tra` themselves) and score the
    result against the truth."""
    out = os.path.join(SCRATCH, name.replace(" ", "-").replace("%", "pc") + "_RES")
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = tracking.track_folder(source or truth_tra, out)
    seconds = time.perf_counter() - started
    scores = evaluate.tracking_scores(out, os.path.dirname(truth_tra))
    whole, truth, called = divisions(out, truth_tra)
    cells = max(len(np.unique(tiff.read(path))) - 1 for path in ctc.masks_by_index(truth_tra).values())
    return {"dataset": name, "frames": summary["frames"], "max_cells": cells, **scores,
            "divisions_found": whole, "divisions_truth": truth, "divisions_called": called,
            "frames_per_s_with_files": round(summary["frames"] / seconds, 2)}


def dropped(truth_tra: str, folder: str, share: float, seed: int = 0) -> str:
    """The truth masks of `truth_tra` with `share` of the cells of every frame erased at random (missed
    detections), written to `folder` as maskTTT.tif."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for index, path in sorted(ctc.masks_by_index(truth_tra).items()):
        labels = tiff.read(path)
        present = np.unique(labels[labels > 0])
        tiff.write_labels(os.path.join(folder, ctc.result_name(index)),
                          np.where(np.isin(labels, present[rng.random(len(present)) < share]), 0, labels))
    return folder


def speed(truth_tra: str, repeats: int) -> dict:
    """Frames/s of the linker alone over the frames of `truth_tra` (in memory), and on its densest frame
    (the time to link it to the frame before); best of `repeats` passes."""
    frames = [tiff.read(path) for _, path in sorted(ctc.masks_by_index(truth_tra).items())]
    counts = [len(np.unique(labels)) - 1 for labels in frames]
    densest = int(np.argmax(counts))
    passes = []
    for _ in range(repeats):
        tracker, seconds = tracking.Tracker(), []
        for labels in frames:
            started = time.perf_counter()
            tracker.add(labels)
            seconds.append(time.perf_counter() - started)
        passes.append(seconds)
    return {"frames": len(frames), "cells": f"{min(counts)}-{max(counts)}",
            "frames_per_s": len(frames) / min(sum(p) for p in passes),
            "densest_cells": counts[densest], "densest_frames_per_s": 1 / min(p[densest] for p in passes)}


def table(rows: list[dict], pace: dict | None) -> str:
    lines = ["| truth masks | frames | cells (most) | TRA | DET | LNK | divisions found / truth (called) "
             "| cellseg-track frames/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        if "tra" not in row:
            lines.append(f"| {row['dataset']} | {row['frames']} | {row['max_cells']} | skipped: {row['skipped']} "
                         "| | | | |")
            continue
        lines.append(f"| {row['dataset']} | {row['frames']} | {row['max_cells']} | {row['tra']:.4f} | "
                     f"{row['det']:.4f} | {row['lnk']:.4f} | {row['divisions_found']} / {row['divisions_truth']} "
                     f"({row['divisions_called']}) | {row['frames_per_s_with_files']:.1f} |")
    if pace:
        lines.append(f"\nLinking speed, colony 02 ({pace['frames']} frames of {pace['cells']} cells, 1305 x 1009, "
                     f"frames in memory): {pace['frames_per_s']:.1f} frames/s over the sequence, "
                     f"{pace['densest_frames_per_s']:.1f} frames/s on its densest frame ({pace['densest_cells']} "
                     "cells).")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="speed: best of this many passes")
    parser.add_argument("--skip_synthetic", action="store_true", help="the colony only")
    parser.add_argument("--output", default="", help="results file name (default: tracking-<machine>)")
    args = parser.parse_args()
    os.makedirs(SCRATCH, exist_ok=True)
    rows, pace = [], None
    if os.path.isdir(COLONY):
        for sequence in ("01", "02"):
            truth = os.path.join(COLONY, f"{sequence}_GT", "TRA")
            rows.append(score(f"colony {sequence}", truth))
            missed = dropped(truth, os.path.join(SCRATCH, f"colony-{sequence}-missed"), MISSED)
            rows.append(score(f"colony {sequence}, {MISSED:.0%} missed", truth, missed))
            print(rows[-2:], file=sys.stderr, flush=True)
        pace = speed(os.path.join(COLONY, "02_GT", "TRA"), args.repeats)
    else:
        print(f"tracking: {COLONY} is missing, the colony is skipped (build it with "
              "`.venv/bin/python ../shared/realdata/fetch.py bacteria data/real`)", file=sys.stderr)
    if not args.skip_synthetic:
        for name, (kind, density) in SYNTHETIC.items():
            data = os.path.join(SCRATCH, "data-" + name.replace(" ", "-"))
            if not os.path.isdir(os.path.join(data, "02_GT", "TRA")):
                synthetic.write_dataset(data, synthetic.Config(kind=kind, sequences=2, frames=10, seed=0,
                                                               density=density))
            for sequence in ("01", "02"):
                rows.append(score(f"{name} {sequence}", os.path.join(data, f"{sequence}_GT", "TRA")))
                print(rows[-1], file=sys.stderr, flush=True)
    machine = args.output or f"tracking-{platform.machine()}-{os.cpu_count()}cpu"
    text = (f"Truth masks tracked by `cellseg.tracking` (`benchmarks/tracking.py`), on "
            f"{platform.processor() or platform.machine()} ({machine}), {os.cpu_count()} cores, "
            f"{time.strftime('%Y-%m-%d')}; synthetic sets: `cellseg-synth` 256 x 256, 10 frames, seed 0.\n\n"
            f"{table(rows, pace)}\n")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{machine}.md"), "w") as handle:
        handle.write(text)
    with open(os.path.join(RESULTS, f"{machine}.json"), "w") as handle:
        json.dump({"machine": machine, "rows": rows, "speed": pace}, handle, indent=2)
    if not args.output:
        write_doc(text)
    print("\n" + text)


def write_doc(text: str) -> None:
    """Put `text` between docs/TRACKING.md's table markers."""
    between_markers(DOC, text, "tracking", "Tracking")


if __name__ == "__main__":
    main()
