"""cellseg-predict: segment frames of any size with a trained model.

    cellseg-predict --model=runs/gowt1 --input=data/Fluo-N2DH-GOWT1/02 --output_dir=out --overlays

    cellseg-predict --model=runs/gowt1 --input=movie.ome.tif --output_dir=out   # a (T, Y, X) stack

Writes CTC results (`NN_RES/maskTTT.tif`, `<stem>_RES/maskTTT.tif` for a stack,
`labels/<frame>.tif` for other TIFFs), `cells.csv` and, with --overlays,
`overlays/<frame>.png`. Sequences (folders and stacks) are tracked. The result
appears only once complete: a rerun into the same --output_dir replaces the
earlier one (its NN_RES/ or labels/, cells.csv, tracks.csv, overlays/) at the
end, and an interrupted or failed run leaves it as it was.
"""

from __future__ import annotations

import sys

from absl import flags

from cellseg.cli import quiet  # noqa: F401, I001 (first: TensorFlow loads without its start-up lines)
from cellseg import instances, predict, tiling
from cellseg.cli import common
from cellseg.progress import Progress

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A cellseg model: a run folder, its checkpoints/best.keras, or its export/.")
flags.DEFINE_string("input", None, "A CTC sequence folder (e.g. data/X/02), a (T, Y, X) TIFF or OME-TIFF stack "
                    "(results in <stem>_RES/), a TIFF, or a glob of TIFFs.")
flags.DEFINE_string("output_dir", None, "Where NN_RES/ (or labels/), cells.csv, tracks.csv and overlays/ go; "
                    "they replace an earlier result's once every frame is done.")
flags.DEFINE_integer("tile_size", 0, "Square tile side, a multiple of 2**depth; 0: the whole frame when it "
                     "holds at most --max_tile_pixels, else the largest square tile under that (an export: its "
                     "own tile size).", lower_bound=0)
flags.DEFINE_integer("overlap", -1, "Overlap of neighbouring tiles (even), with --tile_size; -1: twice the "
                     "network's receptive radius (an export: 64, at most half its tile).", lower_bound=-1)
flags.DEFINE_integer("max_tile_pixels", tiling.MAX_TILE_PIXELS, "Pixels per network call (tiles x their "
                     "pixels): bounds the memory the network needs; frames of one size are batched up to it.",
                     lower_bound=1)
flags.DEFINE_float("mask_threshold", None, "Cell mask threshold: cell probability (binary, three_class) or "
                   "cell distance (distance). Default: postprocess.json, else the target's default.")
flags.DEFINE_float("seed_threshold", None, "Seed threshold: h-maxima height in px (binary), interior "
                   "probability, or with --seed_peaks the height of its peaks (three_class), cell minus neighbour "
                   "distance (distance). Default: as above.")
flags.DEFINE_bool("seed_peaks", None, "three_class: seeds are the peaks of the interior probability rising "
                  "--seed_threshold above their surroundings (--noseed_peaks: where it exceeds it). Default: as above.")
flags.DEFINE_integer("min_size", None, "Objects of fewer pixels are dropped. Default: as above.", lower_bound=0)
flags.DEFINE_bool("tta", True, "Test-time augmentation: average the outputs over the 8 flips and quarter turns "
                  "(SEG +0.02 to +0.04 in benchmarks/quality.py, for 8 times the prediction time; --notta: faster).")
flags.DEFINE_bool("track", True, "Track the cells of a CTC sequence folder or a stack: one label per track, res_track.txt, "
                  "tracks.csv (--notrack: frames alone).")
_PIXEL_SIZE, _FRAME_INTERVAL = common.define_units(__name__)
flags.DEFINE_bool("overlays", False, "Write overlays/<frame>.png with cell contours over each frame.")
flags.mark_flags_as_required(["model", "input", "output_dir"])


def main(argv):
    common.start(argv)
    overrides = {"mask_threshold": FLAGS.mask_threshold, "seed_threshold": FLAGS.seed_threshold,
                 "seed_peaks": FLAGS.seed_peaks, "min_size": FLAGS.min_size}
    try:
        result = predict.run_prediction(FLAGS.input, FLAGS.model, FLAGS.output_dir, FLAGS.tile_size, FLAGS.overlap,
                                        overrides, FLAGS.overlays, Progress("segmenting frames"), FLAGS.tta,
                                        FLAGS.max_tile_pixels, FLAGS.track, _PIXEL_SIZE.value, _FRAME_INTERVAL.value)
    except ValueError as error:
        common.fail("cellseg-predict", error)
    except KeyboardInterrupt:
        common.fail("cellseg-predict", f"interrupted; nothing written, {FLAGS.output_dir} is as it was")
    settings = result["postprocess"]
    source = "tuned on validation (postprocess.json)" if result["tuned"] else "the target's defaults"
    print(f"target {result['target']}; post-processing: {instances.Postprocess.from_dict(settings).describe()} "
          f"({source}"
          f"{', with flags' if any(v is not None for v in overrides.values()) else ''})")
    print(f"segmented {result['frames']} frame(s), {result['cells']} cells; "
          f"labels and cells.csv in {FLAGS.output_dir}")
    if result["tracking"]:
        print(f"tracked: {result['tracking']['tracks']} cell track(s), {result['tracking']['divisions']} division(s); "
              f"res_track.txt beside the labels, tracks.csv in {FLAGS.output_dir}")
    if result["failed"]:
        for reason in result["failed"]:
            print(f"failed: {reason}", file=sys.stderr)
        common.fail("cellseg-predict", f"{len(result['failed'])} frame(s) failed; the others were written")


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
