"""What every cellseg command shares: quiet logs, no stray arguments, one-line errors."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any command imports TensorFlow

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402


def run(main, module: str, **kwargs) -> None:
    """`app.run(main)`, with the flags of the command's `module` shown by --help.

    absl's --help lists the flags of the program's file; an installed command's
    file is a stub that defines none.
    """
    name = sys.argv[0] if module == "__main__" else module
    for flag in flags.FLAGS.get_flags_for_module(name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main, **kwargs)


flags.DEFINE_bool("verbose", False, "Show TensorFlow's start-up lines and INFO logs (absl, Beam, TensorFlow).")


def start(argv: list[str]) -> None:
    """Refuse positional arguments; keep absl (and TensorFlow's collectives, Beam's steps) at WARNING unless asked."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present and not flags.FLAGS.verbose:
        absl_logging.set_verbosity(absl_logging.WARNING)


def fail(command: str, message) -> NoReturn:
    """Exit with status 1 and one line on stderr: `command: message`."""
    sys.exit(f"{command}: {message}")


def define_units(module: str):
    """--pixel_size and --frame_interval, for the commands that measure tracks (predict, track), listed by
    the `module` command's --help."""
    return (flags.DEFINE_float("pixel_size", None, "Pixel size in micrometres: track lengths and speeds in um "
                               "(else px; a stack's own pixel size when its metadata has one).", lower_bound=0, module_name=module),
            flags.DEFINE_float("frame_interval", None, "Minutes between frames: speeds per minute (else per "
                               "frame).", lower_bound=0, module_name=module))
