"""cellseg-summary: what a CTC dataset folder holds, before converting it.

    cellseg-summary --input_dir=Fluo-N2DH-GOWT1
    cellseg-summary --input_dir=movie.tif --masks=movie_masks.tif     # a (T, Y, X) stack, as sequence 01

Prints sequences, frames, frames with gold and silver truth, frame sizes, bit
depth, foreground fraction and cell size. Unreadable files are listed, not fatal.
"""

from __future__ import annotations

import dataclasses
import tempfile

from absl import flags

from cellseg import ctc, stacks, summary
from cellseg.cli import common
from cellseg.progress import Progress

_INPUT_DIR = flags.DEFINE_string("input_dir", None, "A CTC dataset folder (holds 01/, 01_GT/, ...), or a (T, Y, X) "
                                  "TIFF stack.")
_MASKS = flags.DEFINE_string("masks", None, "With a stack: the stack of its label masks (the truth of every frame).")
flags.mark_flag_as_required("input_dir")


def main(argv):
    common.start(argv)
    try:
        if stacks.is_stack(_INPUT_DIR.value):
            with tempfile.TemporaryDirectory(prefix="cellseg-stacks-") as root:
                folder = stacks.unpack(_INPUT_DIR.value, _MASKS.value, root)
                result = dataclasses.replace(summary.summarize(folder, progress=Progress("reading frames")),
                                             root=_INPUT_DIR.value)
        else:
            if _MASKS.value:
                raise ValueError(f"--masks goes with a stack; {_INPUT_DIR.value} is not one")
            result = summary.summarize(_INPUT_DIR.value, progress=Progress("reading frames"))
    except ValueError as error:  # ctc.LayoutError is one
        common.fail("cellseg-summary", error)
    print(summary.format_summary(result))


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
