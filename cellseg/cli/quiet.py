"""TensorFlow loaded without its start-up lines: the commands that use it import this module first.

TensorFlow 2.21 writes C++ log lines to stderr before its logging is set up
(oneDNN notices, "Could not find cuda drivers", a failed cuInit on a machine
without a GPU, a oneDNN line on the first float16 cast), so TF_CPP_MIN_LOG_LEVEL does not hold them back: an alarming
first screen for a biologist, and noise in every log. Here TensorFlow is
imported and its devices listed with the process's stderr pointed at
/dev/null, then stderr comes back; TF_CPP_MIN_LOG_LEVEL=2 keeps later INFO and
WARNING lines out, errors still show. `--verbose` on the command line leaves
everything as TensorFlow prints it.

Nothing here starts TensorFlow's runtime (no op runs), so a command can still
choose its devices after importing this module (`first_half_cast` comes after).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from cellseg import errors

VERBOSE = "--verbose" in sys.argv


@contextlib.contextmanager
def muted():
    """The process's stderr pointed at /dev/null (C++ lines included), unless --verbose."""
    if VERBOSE:
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def first_half_cast() -> None:
    """Run the first float16 cast muted: oneDNN's notice on it ("supports DT_HALF only on platforms with
    AVX-512") is an error line that the records' float16 maps would otherwise print mid-training.

    Running an op starts TensorFlow's runtime, after which devices (logical CPUs, GPU memory growth) and a
    multi-worker job's collectives can no longer be configured: call it after the strategy is made. In a
    multi-worker job (TF_CONFIG set) the strategy's own start runs ops first, and the notice may show once.
    Without TensorFlow, nothing.
    """
    if not errors.TENSORFLOW_INSTALLED:
        return
    with muted():
        tf.cast(tf.zeros([1], tf.float16), tf.float32)


if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if errors.TENSORFLOW_INSTALLED:  # a machine with JAX alone has none to quieten
    with muted():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the device probe prints the cuInit failure; it starts no runtime


def require_tensorflow(command: str) -> None:
    """Exit in one line, before the imports that would fail, where `command` needs TensorFlow and it is not
    installed (a machine set up with cellseg[jax])."""
    if not errors.TENSORFLOW_INSTALLED:
        sys.exit(f"{command}: " + errors.needs_tensorflow("it"))


@contextlib.contextmanager
def beam_import():
    """Around the import of Beam: its import warns on the root logger that apitools is missing ("apitools not
    found, and bigquery client libraries are not available"), which only BigQuery I/O needs. A handler that
    drops it is in place meanwhile, unless --verbose (it also keeps logging.warning from installing a stderr
    handler of its own)."""
    handler = logging.NullHandler()
    if not VERBOSE:
        logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
