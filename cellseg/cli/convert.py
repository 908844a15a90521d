"""cellseg-convert: convert CTC dataset folders into TFRecord shards with Apache Beam.

    cellseg-convert --input_dir=data/Fluo-N2DH-GOWT1 --val_sequences=02
    cellseg-convert --input_dir=gs://b/X --output_dir=gs://b/records/X --runner=DataflowRunner ...
    cellseg-convert --input_dir=movie.tif --masks=movie_masks.tif     # a (T, Y, X) stack and its masks

A stack is unpacked into a temporary CTC dataset folder (sequence 01, its masks
as the truth) and converted from there, on this machine.

Every argument that is not a cellseg-convert flag goes to Beam (runner, workers,
staging). The job itself is `beam_pipelines/ctc_to_tfrecord.py`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile

from absl import flags

from cellseg.cli import quiet  # noqa: I001 (first: TensorFlow loads without its start-up lines)
quiet.require_tensorflow("cellseg-convert")  # the records (tf.train.Example) are TensorFlow's

with quiet.beam_import():
    from beam_pipelines import ctc_to_tfrecord as convert, jobs
from cellseg import ctc, preprocess, stacks  # noqa: E402
from cellseg.cli import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("input_dir", None, "CTC dataset folder(s), local or on any Beam filesystem; "
                          "repeat the flag or separate with commas.")
flags.DEFINE_multi_string("masks", None, "For each --input_dir that is a (T, Y, X) TIFF stack, in order: the stack "
                          "of its label masks (the truth of every frame).")
flags.DEFINE_string("output_dir", None, "Where shards go (default: records/<dataset name>).")
flags.DEFINE_enum("truth", "gold_then_silver", ctc.TRUTH_POLICIES,
                  "Which masks: gold, silver, or gold where a frame has it and silver otherwise.")
flags.DEFINE_list("sequences", None, "Only these sequences (e.g. 01,02).")
flags.DEFINE_float("val_fraction", 0.2, "Fraction of frames for validation, by a hash of dataset/sequence/frame.")
flags.DEFINE_list("val_sequences", None, "Validation sequences (e.g. 02 or Fluo-N2DH-GOWT1/02); "
                  "overrides --val_fraction.")
flags.DEFINE_integer("num_shards", 0, "Shards per split; 0 lets the runner decide (no shuffle).", lower_bound=0)
flags.DEFINE_enum("compression", "none", ["none", "gzip"],
                  "Compression of the shards: gzip stores 3.4x less, reads 1.8x slower.")
flags.DEFINE_bool("weight_map", True, "Store the U-Net border weight map with each frame.")
flags.DEFINE_bool("distance_maps", False, "Store the cell and neighbour distance maps, which "
                  "cellseg-train --target=distance needs (two float16 maps per frame).")
flags.DEFINE_float("w0", preprocess.DEFAULT_W0, "Border weight w0 (U-Net paper: 10).", lower_bound=0.0)
flags.DEFINE_float("sigma", preprocess.DEFAULT_SIGMA, "Border weight sigma in pixels (U-Net paper: 5).",
                   lower_bound=0.1)
flags.DEFINE_float("percentile_low", preprocess.DEFAULT_PERCENTILES[0], "Lower stretch percentile.")
flags.DEFINE_float("percentile_high", preprocess.DEFAULT_PERCENTILES[1], "Upper stretch percentile.")
flags.DEFINE_float("max_error_fraction", 0.0, "Exit non-zero when more than this fraction of inputs fail "
                   "(valid frames are written either way).", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_bool("overwrite", False, "Replace converted data already in --output_dir.")
flags.mark_flag_as_required("input_dir")


def main(argv):
    common.start(argv[:1])  # the other arguments are Beam's
    beam_args = argv[1:]
    unknown = jobs.unknown_beam_args(beam_args)
    if unknown:
        common.fail("cellseg-convert", f"unknown flag(s) {' '.join(unknown)} (neither a cellseg-convert nor a Beam option)")
    inputs = [path.strip() for value in FLAGS.input_dir for path in value.split(",") if path.strip()]
    try:
        settings = convert.Settings(
            truth=FLAGS.truth,
            percentiles=(FLAGS.percentile_low, FLAGS.percentile_high),
            weight_map=FLAGS.weight_map,
            w0=FLAGS.w0,
            sigma=FLAGS.sigma,
            distance_maps=FLAGS.distance_maps,
            val_fraction=FLAGS.val_fraction,
            val_sequences=tuple(FLAGS.val_sequences or ()),
        )
        if not 0.0 <= settings.percentiles[0] < settings.percentiles[1] <= 100.0:
            raise ValueError("need 0 <= --percentile_low < --percentile_high <= 100")
        with contextlib.ExitStack() as cleanup:
            inputs = unpacked(inputs, FLAGS.masks or [], cleanup)
            names = [os.path.basename(path.rstrip("/")) for path in inputs]
            output = convert.Output(FLAGS.output_dir or os.path.join("records", "+".join(names)), FLAGS.num_shards,
                                    FLAGS.compression)
            description = convert.run(inputs, output, settings, beam_args, FLAGS.sequences, FLAGS.overwrite,
                                      command=" ".join(shlex.quote(arg) for arg in sys.argv))
    except (ValueError, FileExistsError) as error:  # LayoutError is a ValueError
        common.fail("cellseg-convert", error)
    print(convert.format_counts(description))
    print(f"wrote {output.directory}/dataset.json")
    counts = description["counts"]
    if counts["errors"]:
        print(f"{counts['errors']} input(s) failed; reasons in {output.directory}/errors-*.jsonl")
    fraction = counts["errors"] / max(counts["discovered"], 1)
    if fraction > FLAGS.max_error_fraction:
        common.fail("cellseg-convert", f"{fraction:.1%} of inputs failed, more than --max_error_fraction="
                    f"{FLAGS.max_error_fraction:g}; the valid frames were written")


def unpacked(inputs: list[str], masks: list[str], cleanup: contextlib.ExitStack) -> list[str]:
    """The inputs with each (T, Y, X) stack replaced by a CTC dataset folder unpacked from it and its masks
    (in a temporary folder that `cleanup` removes)."""
    found = [path for path in inputs if stacks.is_stack(path)]
    if len(masks) not in (0, len(found)):
        raise ValueError(f"{len(masks)} --masks for {len(found)} stack(s) among --input_dir; give one per stack, "
                         "in the same order")
    if not found:
        return inputs
    root = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="cellseg-stacks-"))
    pairs = dict(zip(found, masks or [None] * len(found)))
    return [stacks.unpack(path, pairs[path], root) if path in pairs else path for path in inputs]


def run():
    common.run(main, __name__, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))


if __name__ == "__main__":
    run()
