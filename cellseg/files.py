"""Files of a run or a converted dataset, local or remote: the few operations cellseg needs.

Local paths go through Python's own `os` and `open`; remote ones (gs://, s3://,
hdfs://: anything with `://`) through TensorFlow's file systems (`tf.io.gfile`).
Training on JAX without TensorFlow installed reads and writes local folders;
a remote one there is refused in one line that says what to install.
"""

from __future__ import annotations

import glob as local_glob
import importlib
import os

from cellseg import errors


def _remote(path: str) -> bool:
    if "://" not in str(path):
        return False
    if not errors.TENSORFLOW_INSTALLED:
        raise ValueError(errors.needs_tensorflow(f"{path}: a remote path") + ", or use a local folder")
    return True


def _gfile():
    """TensorFlow's file systems, loaded at the first remote path (as `cellseg.backends` loads its rooms): local
    folders never load TensorFlow, so training on JAX stays free of it."""
    return importlib.import_module("tensorflow").io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path) if _remote(path) else os.path.exists(path)


def open_file(path: str, mode: str = "r"):
    """The file at `path`, opened in `mode` (a context manager)."""
    return _gfile().GFile(path, mode) if _remote(path) else open(path, mode)


def glob(pattern: str) -> list[str]:
    """The paths matching `pattern`, sorted."""
    return sorted(_gfile().glob(pattern) if _remote(pattern) else local_glob.glob(pattern))


def makedirs(path: str) -> None:
    if _remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def replace(source: str, destination: str) -> None:
    """`source` renamed over `destination` (atomic on a local file system)."""
    if _remote(source):
        _gfile().rename(source, destination, overwrite=True)
    else:
        os.replace(source, destination)
