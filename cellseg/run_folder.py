"""The run folder (`model_dir`): what it holds, one training at a time, and reading it back.

    checkpoints/best.keras   the model of the best validation Dice
    backup/                  BackupAndRestore state: a killed run resumes here
    tensorboard/             scalars per epoch (train/, validation/) and images
    log.csv                  one row of metrics per epoch
    flags.txt                the command line's flags (written by cellseg-train)
    metrics.json             best and final validation metrics (inference mode)
    postprocess.json         the target and the post-processing thresholds tuned on validation, with the SEG reached
    plan.json                the settings derived from the training split's fingerprint, each with its reason
    export/                  SavedModel for serving: image in [0, 1] -> the target's outputs
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import zipfile

from cellseg import files

BEST = os.path.join("checkpoints", "best.keras")
BACKUP = "backup"
TENSORBOARD = "tensorboard"
LOG = "log.csv"
FLAGS = "flags.txt"
METRICS = "metrics.json"
POSTPROCESS = "postprocess.json"
PLAN = "plan.json"
EXPORT = "export"


@contextlib.contextmanager
def locked(folder: str):
    """Hold `folder/.lock` while training: a second training into the same folder is refused.

    The lock is the operating system's (flock): it ends with the process, even
    a killed one. Folders on remote file systems (gs://, ...) are not locked.
    """
    if "://" in folder:
        yield
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ValueError(f"{folder} is in use by another training (process {holder}); wait for it to end "
                             "or choose another --model_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_resumable(model_dir: str, architecture: dict) -> None:
    """ValueError in one line when the folder's checkpoint differs from `architecture` (flag name -> value)."""
    path = os.path.join(model_dir, BEST)
    if not files.exists(path):
        return
    try:
        with files.open_file(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
            saved = json.loads(archive.read("config.json"))["config"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: unreadable ({error}); move it away to start again in this folder") from None
    differ = [f"--{name}={saved[name]} (given {value})"
              for name, value in architecture.items() if name in saved and saved[name] != value]
    if differ:
        raise ValueError(f"{model_dir} holds a run with {', '.join(differ)}; resume it with its own flags "
                         f"(--flagfile={os.path.join(model_dir, FLAGS)}) or choose another --model_dir")


def read_log(model_dir: str) -> list[dict]:
    """The rows of log.csv (every epoch, across resumed runs, in order), values as floats.

    Lines that are not numbers (a repeated header, a line torn by a kill) are
    skipped; of an epoch logged twice, the last row counts.
    """
    path = os.path.join(model_dir, LOG)
    if not os.path.exists(path):
        return []
    epochs = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                values = {k: float(v) for k, v in row.items() if k and isinstance(v, str) and v != ""}
            except ValueError:  # a header written again, or a line torn by a kill
                continue
            if "epoch" in values:
                epochs[int(values["epoch"])] = values  # an epoch run again replaces the earlier row
    return [epochs[epoch] for epoch in sorted(epochs)]
