"""What cellseg says when something outside it fails: one line, the reason first."""

from __future__ import annotations

import importlib.util


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# A machine with JAX and no TensorFlow (pip install 'cellseg[jax]') trains and predicts; what needs TensorFlow
# (the Beam conversion's records writer, SavedModels, remote file systems) says so in one line.
def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken install counts as none
        return False


TENSORFLOW_INSTALLED = _installed("tensorflow")
TENSORFLOW_EXTRA = "pip install 'cellseg[tensorflow]'"


def needs_tensorflow(what: str) -> str:
    """The line for `what` on a machine without TensorFlow."""
    return f"{what} needs TensorFlow, which is not installed here: {TENSORFLOW_EXTRA}"
