"""cellseg-synth: write a synthetic dataset in Cell Tracking Challenge layout.

    cellseg-synth --kind=fluo --output_dir=data/Fluo-N2DH-SYNTH --sequences=2 --frames=10

Deterministic by --seed. Prints the dataset summary when done.
"""

from __future__ import annotations

import os
import shutil
import time

from absl import flags

from cellseg import ctc, summary, synthetic
from cellseg.cli import common
from cellseg.progress import Progress

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Dataset folder to create (holds 01/, 01_GT/, ...).")
_KIND = flags.DEFINE_enum("kind", "fluo", synthetic.KINDS, "fluo: 16-bit fluorescent nuclei; phc: 8-bit phase contrast.")
_SEQUENCES = flags.DEFINE_integer("sequences", 2, "Number of sequences (01, 02, ...).", lower_bound=1, upper_bound=99)
_FRAMES = flags.DEFINE_integer("frames", 10, "Frames per sequence.", lower_bound=1)
_HEIGHT = flags.DEFINE_integer("height", 256, "Frame height in pixels.", lower_bound=32)
_WIDTH = flags.DEFINE_integer("width", 256, "Frame width in pixels.", lower_bound=32)
_SEED = flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same dataset.")
_GOLD_EVERY = flags.DEFINE_integer("gold_every", 3, "Gold truth on every n-th frame (silver on all).", lower_bound=1)
_DENSITY = flags.DEFINE_float("density", 1.0, "Multiplies the kind's cell density: 2-3 gives crowded, touching cells.",
                              lower_bound=0.1, upper_bound=4.0)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output_dir if it already holds a CTC dataset.")
flags.mark_flag_as_required("output_dir")


def main(argv):
    common.start(argv)
    output_dir = _OUTPUT_DIR.value
    _make_room(output_dir, _OVERWRITE.value)
    config = synthetic.Config(
        kind=_KIND.value,
        sequences=_SEQUENCES.value,
        frames=_FRAMES.value,
        height=_HEIGHT.value,
        width=_WIDTH.value,
        seed=_SEED.value,
        gold_every=_GOLD_EVERY.value,
        density=_DENSITY.value,
    )
    start = time.monotonic()
    synthetic.write_dataset(output_dir, config, progress=Progress("synthesising frames"))
    print(f"wrote a synthetic {config.kind} dataset to {output_dir} in {time.monotonic() - start:.1f} s\n")
    print(summary.format_summary(summary.summarize(output_dir)))


def _make_room(output_dir: str, overwrite: bool) -> None:
    if not os.path.exists(output_dir) or (os.path.isdir(output_dir) and not os.listdir(output_dir)):
        return
    if not overwrite:
        common.fail("cellseg-synth", f"{output_dir} exists and is not empty; pass --overwrite to replace it")
    try:
        ctc.discover(output_dir)
    except ctc.LayoutError:
        common.fail("cellseg-synth", f"{output_dir} is not a CTC dataset folder; refusing to delete it")
    shutil.rmtree(output_dir)


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
