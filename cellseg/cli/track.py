"""cellseg-track: link the labels of a time-lapse's frames into tracks, with per-track motility.

    cellseg-track --input=out/02_RES                        # cellseg-predict's results, relabelled in place
    cellseg-track --input=other_tool/labels --output_dir=tracked --pixel_size=0.65 --frame_interval=5
    cellseg-track --input=labels.tif                       # a (T, Y, X) stack of labels -> labels_RES/

Reads a folder of label TIFFs (maskTTT.tif, the truth's man_trackTTT.tif, or any
TIFFs in name order; another tool's segmentation too) or a (T, Y, X) stack of
them, and writes, into --output_dir (default: the input folder, or
`<stem>_RES/` beside a stack), the masks relabelled so that one label
is one track, the challenge's `res_track.txt` and `tracks.csv`. Loads no
TensorFlow (`cellseg.tracking`).
"""

from __future__ import annotations

from absl import flags

from cellseg import tracking
from cellseg.cli import common
from cellseg.progress import Progress

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A folder of label TIFFs, one per frame (e.g. out/02_RES), or a (T, Y, X) "
                    "TIFF stack of labels.")
flags.DEFINE_string("output_dir", None, "Where the relabelled masks, res_track.txt and tracks.csv go "
                    "(default: --input, relabelled in place; <stem>_RES beside a stack).")
_PIXEL_SIZE, _FRAME_INTERVAL = common.define_units(__name__)
flags.DEFINE_integer("max_gap", tracking.Config.max_gap, "Frames a cell may be missing and still be linked.",
                     lower_bound=0)
flags.DEFINE_bool("drift", tracking.Config.drift, "Estimate and remove a global shift between frames.")
flags.DEFINE_bool("split_merged", tracking.Config.split_merged, "Cut an object that holds two cells of the frame "
                  "before (each of a cell's size, seen for two frames or born of a division) and has a waist "
                  f"(solidity under {tracking.MERGED_SOLIDITY:g}) between them.")
flags.DEFINE_bool("overlays", False, "Also draw overlays/trajectories.png (the paths over the last mask) and "
                  "overlays/lineage.png.")
flags.mark_flags_as_required(["input"])


def main(argv):
    common.start(argv)
    try:
        output_dir = FLAGS.output_dir or tracking.default_output(FLAGS.input)
        result = tracking.track_folder(FLAGS.input, output_dir,
                                       tracking.Config(max_gap=FLAGS.max_gap, drift=FLAGS.drift,
                                                       split_merged=FLAGS.split_merged), _PIXEL_SIZE.value,
                                       _FRAME_INTERVAL.value, Progress("tracking frames"), FLAGS.overlays)
    except ValueError as error:
        common.fail("cellseg-track", error)
    print(f"tracked {result['frames']} frame(s): {result['tracks']} cell track(s), {result['divisions']} "
          f"division(s); res_track.txt and tracks.csv in {output_dir}")


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
