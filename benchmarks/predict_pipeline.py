"""Prediction as a Beam job against the single process: frames/s on the same cores.

    python benchmarks/predict_pipeline.py [--sequences=8] [--frames=20] [--size=512]

`--sequences` synthetic sequences of `--frames` frames of `--size` x `--size`
(4 distinct frames each, repeated) are segmented and tracked, without test-time
augmentation, by the model of `sequence.py` (trained for a minute):

- `single process`: one Python process running `cellseg.predict.run_prediction`
  over the sequences one after another (what `cellseg-predict` does for each,
  TensorFlow and the model loaded once);
- `cellseg-predict --runner=DirectRunner` in multi_processing mode with 1 and 2
  worker processes, and in multi_threading mode (the local default) on every core;
- `--runner=PortableRunner` through Beam's local job service and an external
  worker pool on loopback (the protocol of Flink's and Spark's job servers).

Each runs in its own process, start-up included; the ratio is frames/s over the
single process's, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

from cellseg import ctc, synthetic
from common import SCRATCH, peak, show, write
from sequence import model

DISTINCT = 4
SINGLE = """
import sys
from cellseg import predict
root, out, run = sys.argv[1:4]
for name in sorted(n for n in __import__("os").listdir(root) if n.isdigit()):
    predict.run_prediction(f"{root}/{name}", run, f"{out}/{name}", tta=False)
"""


def sequences(work: str, count: int, frames: int, size: int) -> str:
    """A CTC dataset root of `count` sequences of `frames` frames (DISTINCT distinct frames each, repeated)."""
    source = os.path.join(work, f"distinct-{size}")
    if not os.path.isdir(os.path.join(source, "01")):
        synthetic.write_dataset(source, synthetic.Config(kind="fluo", sequences=1, frames=DISTINCT, height=size,
                                                         width=size, seed=3))
    originals = ctc.sequence_frames(os.path.join(source, "01"))
    root = os.path.join(work, f"plate-{count}x{frames}-{size}")
    if not os.path.isdir(os.path.join(root, f"{count:02d}")):
        shutil.rmtree(root, ignore_errors=True)
        for sequence in range(1, count + 1):
            folder = os.path.join(root, f"{sequence:02d}")
            os.makedirs(folder)
            for index in range(frames):
                os.link(originals[(index + sequence) % len(originals)], os.path.join(folder, f"t{index:03d}.tif"))
    return root


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def serving(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--output_json", default=os.path.join(SCRATCH, "predict_pipeline.json"))
    args = parser.parse_args()
    work = os.path.join(SCRATCH, "predict_pipeline")
    os.makedirs(work, exist_ok=True)
    run = model(os.path.join(SCRATCH, "sequence"))
    root = sequences(work, args.sequences, args.frames, args.size)
    total = args.sequences * args.frames
    common = [f"--model={run}", f"--input={root}", "--notta"]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    job_port, pool_port = free_ports(2)
    services = []
    try:
        ways = [
            ("single process", "python", ["-c", SINGLE, root, None, run]),
            ("DirectRunner, multi_processing, 1 worker", "cellseg-predict",
             [*common, "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=1"]),
            ("DirectRunner, multi_processing, 2 workers", "cellseg-predict",
             [*common, "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
            ("DirectRunner, multi_threading, every core", "cellseg-predict", [*common, "--runner=DirectRunner"]),
            ("PortableRunner, loopback job service and worker pool", "cellseg-predict",
             [*common, "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
              "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"]),
        ]
        rows = []
        for name, tool, flags in ways:
            out = os.path.join(work, "out-" + "".join(c if c.isalnum() else "-" for c in name))
            shutil.rmtree(out, ignore_errors=True)
            flags = [out if flag is None else flag for flag in flags]
            if tool == "cellseg-predict":
                flags.append(f"--output_dir={out}")
            if name.startswith("PortableRunner") and not services:
                services = [subprocess.Popen([sys.executable, "-m", module, flag], env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
                            for module, flag in (
                                ("apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"),
                                ("apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"))]
                deadline = time.monotonic() + 120
                if not (serving(job_port, deadline) and serving(pool_port, deadline)):
                    sys.exit("predict_pipeline: the local job service or worker pool did not start")
            mb, seconds = peak(tool, *flags, log=out + ".log")
            written = sum(len(ctc.masks_by_index(os.path.join(out, f"{s:02d}", f"{s:02d}_RES")))
                          for s in range(1, args.sequences + 1))
            if written != total:
                sys.exit(f"predict_pipeline: {name} wrote {written} masks, expected {total}")
            rows.append({"way": name, "seconds": round(seconds, 1), "frames_per_s": round(total / seconds, 3),
                         "peak_mb": round(mb, 1)})
            print(f"{name}: {total / seconds:.2f} frames/s", file=sys.stderr)
    finally:
        for service in services:
            service.kill()
            service.wait()
    single = rows[0]["frames_per_s"]
    for row in rows:
        row["ratio"] = round(row["frames_per_s"] / single, 2)
    show("predict_pipeline", write(args.output_json, {"sequences": args.sequences, "frames": args.frames,
                                                      "size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
