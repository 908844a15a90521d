"""How each benchmark's result reads, as a caption and a markdown table (`FORMATS`).

The benchmarks print their result through it (`common.show`) and `report.py`
writes the same tables into benchmarks/results/ and the README.
"""

from __future__ import annotations

import collections


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
    return (f"Inference (`inference.py`): ms per frame, side by side in one run: a plain Keras whole-frame "
            f"pass, cellseg's network step (the frame whole), the former overlap tiles (tile {r['tile']}, overlap "
            f"{r['overlap']}, {r['batch']} per batch), base {r['base_filters']}; then post-processing, {r['device']}",
            table(["frame", "Keras ms", "cellseg ms", "ratio", "tiles ms", "ratio", "cells",
                   "post-processing ms, binary", "post-processing ms, three_class"],
                  [[f"{x['size']} x {x['size']}", f"{x['keras_ms']:.0f}", f"{x['cellseg_ms']:.0f}",
                    f"{x['cellseg_over_keras']:.2f}", f"{x['tiles_256_ms']:.0f}", f"{x['tiles_over_keras']:.2f}",
                    x["cells"], f"{x['postprocess_binary_ms']:.0f}", f"{x['postprocess_three_class_ms']:.0f}"]
                   for x in r["rows"]]))


def sequence(r: dict) -> tuple[str, str]:
    return (f"Segmenting a time-lapse (`sequence.py`): `cellseg-predict` end to end (read, network, instances, "
            f"cells.csv, write) on {r['size']} x {r['size']} frames, each run in its own process, {r['device']}; "
            f"a long sequence's rate (extra frames over extra seconds): "
            f"{r['steady_frames_per_s'] or float('nan'):.2f} frames/s",
            table(["frames", "test-time augmentation", "frames/s", "seconds", "peak MB"],
                  [[x["frames"], "on" if x["tta"] else "off", f"{x['frames_per_s']:.2f}", f"{x['seconds']:.0f}",
                    f"{x['peak_mb']:.0f}"] for x in r["rows"]]))


def predict_pipeline(r: dict) -> tuple[str, str]:
    return (f"Prediction as a Beam job (`predict_pipeline.py`): {r['sequences']} sequences of {r['frames']} frames "
            f"of {r['size']} x {r['size']}, segmented and tracked without test-time augmentation, each way in its "
            f"own process (start-up included), {r['device']}; ratio: frames/s over the single process's",
            table(["way", "frames/s", "ratio", "seconds", "peak MB (launching process)"],
                  [[x["way"], f"{x['frames_per_s']:.2f}", f"{x['ratio']:.2f}x", f"{x['seconds']:.0f}",
                    f"{x['peak_mb']:.0f}"] for x in r["rows"]]))


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
           "sequence": sequence, "predict_pipeline": predict_pipeline, "memory": memory}
