"""Shared by the benchmarks: the scratch folder, what ran them (CPU, GPUs, TensorFlow), their JSON output.

Every benchmark's JSON names the machine and the device its TensorFlow work ran
on, so that `report.py` can file the results under a machine and the same
command gives GPU rows wherever TensorFlow sees a GPU.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: its start-up chatter hides results

import tensorflow as tf  # noqa: E402

from formats import FORMATS  # noqa: E402

SCRATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scratch")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees; empty on a machine without one."""
    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]


def slug(gpus: list[str]) -> str:
    """A short file name for the machine: x86_64-2cpu, x86_64-16cpu-nvidia-h100, x86_64-32cpu-4x-nvidia-a100."""
    name = f"{platform.machine()}-{os.cpu_count()}cpu"
    if gpus:
        words = [word for word in re.findall(r"[a-z0-9]+", gpus[0].lower())
                 if not re.fullmatch(r"\d+gb|hbm\w*|pcie|sxm\w*|nvl", word)]
        name += "-" + (f"{len(gpus)}x-" if len(gpus) > 1 else "") + "-".join(words[:4])
    return name


def machine() -> dict:
    gpus = gpu_names()
    return {"slug": slug(gpus), "host": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "arch": platform.machine(), "gpus": gpus, "tensorflow": tf.__version__,
            "python": platform.python_version()}


def device(info: dict, cpu_only: bool = False) -> str:
    """The device the TensorFlow work runs on, in words: the GPUs when there are any, else the CPU."""
    if info["gpus"] and not cpu_only:
        return ", ".join(f"{count} x {name}" for name, count in collections.Counter(info["gpus"]).items())
    return f"CPU ({info['cpu']}, {info['cores']} cores)"


def show(name: str, result: dict) -> None:
    """Print a benchmark's result as the report formats it (`formats.FORMATS[name]`)."""
    caption, body = FORMATS[name](result)
    print(f"\n{caption}\n\n{body}")


def write(path: str, results: dict, cpu_only: bool = False) -> dict:
    """Write `results` with the machine, the device and the date to `path` (JSON); returns what was written.

    `cpu_only`: the measured work never uses a GPU (conversion), so the CPU is the device.
    """
    info = machine()
    payload = {"machine": info, "device": device(info, cpu_only),
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **results}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
    return payload


def tool(name: str, *args: str) -> str:
    """Run a cellseg command of this environment and return what it printed; exit with its error when it fails."""
    command = [os.path.join(os.path.dirname(sys.executable), name), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def peak(tool: str, *args: str, log: str) -> tuple[float, float]:
    """(peak resident MB, seconds) of one run of a cellseg tool in its own process."""
    command = [os.path.join(os.path.dirname(sys.executable), tool), *args]
    start = time.perf_counter()
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        with open(log) as output:
            sys.exit(f"{' '.join(command)} failed:\n{output.read()[-3000:]}")
    kilobytes = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux
    return kilobytes / 1024, seconds

