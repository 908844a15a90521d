"""TensorFlow loaded without its start-up lines: the commands that use it import this module first.

TensorFlow 2.21 writes C++ log lines to stderr before its logging is set up
(oneDNN notices, "Could not find cuda drivers", a failed cuInit on a machine
without a GPU, a oneDNN line on the first float16 cast), so TF_CPP_MIN_LOG_LEVEL does not hold them back: an alarming
first screen for a biologist, and noise in every log. Here TensorFlow is
imported and its devices listed with the process's stderr pointed at
/dev/null, then stderr comes back; TF_CPP_MIN_LOG_LEVEL=2 keeps later INFO and
WARNING lines out, errors still show. `--verbose` on the command line leaves
everything as TensorFlow prints it.
"""

from __future__ import annotations

import os
import sys

VERBOSE = "--verbose" in sys.argv

if not VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    _saved, _null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(_null, 2)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the device probe prints the cuInit failure
        # oneDNN's notice on the first half-precision cast ("supports DT_HALF only on platforms with
        # AVX-512"), an error line that the records' float16 maps would otherwise print mid-training.
        # Running an op starts TensorFlow's runtime, after which a multi-worker job (TF_CONFIG set)
        # can no longer configure its collective ops: there the notice may show once.
        if "TF_CONFIG" not in os.environ:
            tf.cast(tf.zeros([1], tf.float16), tf.float32)
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
        os.close(_null)
