"""cellseg-predict: segment frames of any size with a trained model.

    cellseg-predict --model=runs/gowt1 --input=data/Fluo-N2DH-GOWT1/02 --output_dir=out --overlays

    cellseg-predict --model=runs/gowt1 --input=movie.ome.tif --output_dir=out   # a (T, Y, X) stack

    cellseg-predict --model=gowt1.zip --engine=onnx --input=data/X/02 --output_dir=out   # ONNX Runtime

    cellseg-predict --model=gs://b/runs/gowt1 --input=gs://b/plates --output_dir=gs://b/results \
        --runner=DataflowRunner --project=P --region=R ...                    # many sequences on Beam

Writes CTC results (`NN_RES/maskTTT.tif`, `<stem>_RES/maskTTT.tif` for a stack,
`labels/<frame>.tif` for other TIFFs), `cells.csv` and, with --overlays,
`overlays/<frame>.png`. Sequences (folders and stacks) are tracked. The result
appears only once complete: a rerun into the same --output_dir replaces the
earlier one (its NN_RES/ or labels/, cells.csv, tracks.csv, overlays/) at the
end, and an interrupted or failed run leaves it as it was.

With --runner, the Beam job `beam_pipelines/predict_sequences.py` segments and
tracks every sequence under --input on that runner (DirectRunner on this
machine's cores, or Dataflow, Flink, Spark, any portable job server): each
sequence's results go to <output_dir>/<sequence>/ as above, unreadable frames to
<output_dir>/errors-*.jsonl, the counts to <output_dir>/predictions.json. Every
argument that is not a cellseg-predict flag goes to Beam.
"""

from __future__ import annotations

import sys

from absl import flags

from cellseg.cli import keras_backend  # noqa: I001 (first: it sets KERAS_BACKEND before Keras is imported)
from cellseg.cli import quiet  # noqa: I001 (then TensorFlow loads without its start-up lines)
with quiet.beam_import():
    from beam_pipelines import jobs, predict_sequences
from cellseg import instances, predict, tiling
from cellseg.cli import common
from cellseg.progress import Progress

FLAGS = flags.FLAGS
BACKEND = keras_backend.define(__name__)
flags.DEFINE_string("model", None, "A cellseg model: a run folder, its checkpoints/best.keras, its export/, or a "
                    "package that cellseg-export wrote (NAME.zip).")
flags.DEFINE_enum("engine", "keras", predict.ENGINES, "What runs the network: keras, or onnx (a package's ONNX "
                  "weights run by ONNX Runtime, without TensorFlow: pip install 'cellseg[onnx]').")
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
flags.DEFINE_string("runner", None, "Run as a Beam job on this runner (DirectRunner, DataflowRunner, FlinkRunner, "
                    "SparkRunner, PortableRunner): every sequence under --input (a CTC dataset root, a glob of "
                    "sequence folders, stacks; local, gs:// or s3://) into --output_dir/<sequence>/. Other "
                    "arguments go to Beam.")
flags.mark_flags_as_required(["model", "input", "output_dir"])


def main(argv):
    if FLAGS.runner:
        return on_beam(argv[1:])
    common.start(argv)
    overrides = {"mask_threshold": FLAGS.mask_threshold, "seed_threshold": FLAGS.seed_threshold,
                 "seed_peaks": FLAGS.seed_peaks, "min_size": FLAGS.min_size}
    try:
        keras_backend.check(BACKEND.value)
        result = predict.run_prediction(FLAGS.input, FLAGS.model, FLAGS.output_dir, FLAGS.tile_size, FLAGS.overlap,
                                        overrides, FLAGS.overlays, Progress("segmenting frames"), FLAGS.tta,
                                        FLAGS.max_tile_pixels, FLAGS.track, _PIXEL_SIZE.value, _FRAME_INTERVAL.value,
                                        FLAGS.engine)
    except (ValueError, RuntimeError) as error:
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


def on_beam(beam_args: list[str]) -> None:
    common.start([""])
    unknown = jobs.unknown_beam_args(beam_args)
    if unknown:
        common.fail("cellseg-predict", f"unknown flag(s) {' '.join(unknown)} (neither a cellseg-predict nor a Beam "
                    "option)")
    if FLAGS.tile_size or FLAGS.overlap >= 0:
        common.fail("cellseg-predict", "--tile_size and --overlap are for one process; with --runner each frame's "
                    "tiles are chosen by its size")
    overrides = {"mask_threshold": FLAGS.mask_threshold, "seed_threshold": FLAGS.seed_threshold,
                 "seed_peaks": FLAGS.seed_peaks, "min_size": FLAGS.min_size}
    settings = predict_sequences.Settings(
        FLAGS.model, FLAGS.tta, FLAGS.track, FLAGS.overlays,
        tuple((name, value) for name, value in overrides.items() if value is not None),
        _PIXEL_SIZE.value, _FRAME_INTERVAL.value, FLAGS.max_tile_pixels, FLAGS.engine)
    try:
        summary = predict_sequences.run(FLAGS.input, FLAGS.output_dir, settings,
                                        [f"--runner={FLAGS.runner}", *beam_args])
    except ValueError as error:
        common.fail("cellseg-predict", error)
    print(predict_sequences.format_summary(summary, FLAGS.output_dir))
    if summary["errors"]:
        common.fail("cellseg-predict", f"{summary['errors']} frame(s) failed, reasons in "
                    f"{FLAGS.output_dir}/errors-*.jsonl; the others were written")


def run():
    # Beam's options pass through: parsed here only when --runner is given (main refuses them otherwise).
    common.run(main, __name__, flags_parser=lambda argv: _parse(argv))


def _parse(argv: list[str]) -> list[str]:
    rest = flags.FLAGS(argv, known_only=True)
    if not flags.FLAGS.runner and len(rest) > 1:
        flags.FLAGS(argv)  # absl's own error for an unknown flag, as without Beam
    return rest


if __name__ == "__main__":
    run()
