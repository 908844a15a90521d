"""cellseg-summary: what a CTC dataset folder holds, before converting it.

    cellseg-summary --input_dir=Fluo-N2DH-GOWT1

Prints sequences, frames, frames with gold and silver truth, frame sizes, bit
depth, foreground fraction and cell size. Unreadable files are listed, not fatal.
"""

from __future__ import annotations

from absl import flags

from cellseg import ctc, summary
from cellseg.cli import common
from cellseg.progress import Progress

_INPUT_DIR = flags.DEFINE_string("input_dir", None, "A CTC dataset folder (holds 01/, 01_GT/, ...).")
flags.mark_flag_as_required("input_dir")


def main(argv):
    common.start(argv)
    try:
        result = summary.summarize(_INPUT_DIR.value, progress=Progress("reading frames"))
    except ctc.LayoutError as error:
        common.fail("cellseg-summary", error)
    print(summary.format_summary(result))


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
