"""Keras' backend from a command's --backend: set before anything imports Keras, which reads it once.

The commands that run a network (cellseg-train, cellseg-predict) import this
module first. `--backend=jax` (or `--backend jax`, or in a --flagfile) on the command line sets
KERAS_BACKEND; without it, KERAS_BACKEND as set, else TensorFlow.
"""

from __future__ import annotations

import os
import sys

from absl import flags

BACKENDS = ("tensorflow", "jax")


def _given(argv: list[str]) -> str | None:
    """The last --backend of `argv`, a --flagfile's (a run's flags.txt) included, as absl reads them."""
    chosen = None
    for index, arg in enumerate(argv):
        if arg.startswith("--backend="):
            chosen = arg.split("=", 1)[1]
        elif arg == "--backend" and index + 1 < len(argv):
            chosen = argv[index + 1]
        elif arg.startswith("--flagfile="):
            try:
                with open(arg.split("=", 1)[1]) as handle:
                    chosen = _given(handle.read().split()) or chosen
            except OSError:
                pass  # absl's own parsing says what is wrong with the file
    return chosen


GIVEN = _given(sys.argv[1:])
if GIVEN in BACKENDS:  # another value is refused by the flag's parser, with the choices
    os.environ["KERAS_BACKEND"] = GIVEN


def define(module: str):
    """--backend, listed by the `module` command's --help."""
    default = os.environ.get("KERAS_BACKEND", "tensorflow")
    return flags.DEFINE_enum("backend", default if default in BACKENDS else "tensorflow", BACKENDS,
                             "Keras backend that runs the network: tensorflow (tf.distribute) or jax (Keras' "
                             "DataParallel over the local devices). Default: KERAS_BACKEND, else tensorflow.",
                             module_name=module)


def check(chosen: str) -> None:
    """Refuse a run whose Keras was imported on another backend than `chosen` (imported before this module)."""
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != chosen:
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not --backend={chosen}: Keras was imported "
                           "before the flag was read; set KERAS_BACKEND instead")
