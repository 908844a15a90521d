"""cellseg-track: link the labels of a time-lapse's frames into tracks, with per-track motility and lineage.

    cellseg-track --input=out/02_RES                        # cellseg-predict's results, relabelled in place
    cellseg-track --input=other_tool/labels --output_dir=tracked --pixel_size=0.65 --frame_interval=5
    cellseg-track --input=labels.tif --overlays             # a (T, Y, X) stack of labels -> labels_RES/

Reads a folder of label TIFFs (maskTTT.tif, the truth's man_trackTTT.tif, or any
TIFFs numbered in their names; another tool's segmentation too), a (T, Y, X)
stack of them or one 2-D label TIFF, and writes, into --output_dir (default: the
input folder, or `<stem>_RES/` beside a stack), the masks relabelled so that one
label is one track, the challenge's `res_track.txt` and `tracks.csv` (motility,
generation, cell cycle). Frames are keyed by the number in their names: a
missing number is a missing frame. Links weigh several cues: the overlap of
each cell moved by a local displacement field (fitted to the confident links
of the frame pair, after any stage drift), the distance to its predicted
centroid, and the change of its area, length and orientation; a division is
one mother and two daughters, each about half of her, together matching her
(a rod's side by side along her axis); one global assignment per frame pair.
Each frame is checked as it is read (integer labels, none negative, not an
intensity image), and the results are written aside and moved into place only
at the end: an error (a bad frame, a full disk) leaves the output folder as it
was. Loads no TensorFlow (`cellseg.tracking`; docs/TRACKING.md).
"""

from __future__ import annotations

import sys

from absl import flags

from cellseg import tracking
from cellseg.cli import common
from cellseg.progress import Progress

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "A folder of label TIFFs, one per frame, numbered in their names (e.g. "
                    "out/02_RES), a (T, Y, X) TIFF stack of labels, or one 2-D label TIFF.")
flags.DEFINE_string("output_dir", None, "Where the relabelled masks, res_track.txt and tracks.csv go "
                    "(default: --input, relabelled in place; <stem>_RES beside a stack).")
_PIXEL_SIZE, _FRAME_INTERVAL = common.define_units(__name__)
flags.DEFINE_integer("max_gap", tracking.Config.max_gap, "Frames a cell may be missing (or a frame absent) and "
                     "still be linked.", lower_bound=0)
flags.DEFINE_bool("drift", tracking.Config.drift, "Also try a global shift between frames (stage drift, by phase "
                  "correlation) as the first guess of motion; the local displacement field refines either guess.")
flags.DEFINE_bool("divisions", tracking.Config.divisions, "Weigh divisions: a mother and two daughters, each about "
                  "half her area, together matching her moved mask, a rod's side by side along her long axis.")
flags.DEFINE_bool("split_merged", tracking.Config.split_merged, "Cut an object that holds two cells of the frame "
                  "before (each of a cell's size, seen for two frames or born of a division) and has a waist "
                  f"(solidity under {tracking.MERGED_SOLIDITY:g}) between them.")
flags.DEFINE_bool("overlays", False, "Also draw overlays/trajectories.png (the paths over the last mask, with a "
                  "scale bar when the pixel size is known) and overlays/lineage.png (the lineage tree, time in frames "
                  "or minutes).")
flags.mark_flags_as_required(["input"])


def main(argv):
    common.start(argv)
    try:
        output_dir = FLAGS.output_dir or tracking.default_output(FLAGS.input)
        result = tracking.track_folder(FLAGS.input, output_dir,
                                       tracking.Config(max_gap=FLAGS.max_gap, drift=FLAGS.drift,
                                                       split_merged=FLAGS.split_merged, divisions=FLAGS.divisions),
                                       _PIXEL_SIZE.value, _FRAME_INTERVAL.value, Progress("tracking frames"),
                                       FLAGS.overlays)
    except (ValueError, OSError) as error:
        common.fail("cellseg-track", error)
    print(f"tracked {result['frames']} frame(s): {result['tracks']} cell track(s), {result['divisions']} "
          f"division(s); res_track.txt and tracks.csv in {output_dir}")


def run():
    sys.modules["__main__"].__doc__ = __doc__  # --help opens with the page above (absl prints __main__'s doc)
    common.run(main, __name__)


if __name__ == "__main__":
    run()
