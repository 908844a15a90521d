"""cellseg-evaluate: score a result folder against reference masks, the challenge's way.

    cellseg-evaluate --pred=out/02_RES --gt=data/X/02_GT/SEG --baseline=otsu

Loads no TensorFlow: scoring TIFFs needs numpy only (`cellseg.evaluate`).
"""

from __future__ import annotations

import json
import os

from absl import flags

from cellseg import evaluate
from cellseg.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("pred", None, "Result folder with maskTTT.tif (e.g. out/02_RES).")
flags.DEFINE_string("gt", None, "Reference folder with man_segTTT.tif (e.g. data/X/02_GT/SEG or 02_ST/SEG).")
flags.DEFINE_enum("baseline", "none", ["none", "otsu"], "Also score a classical baseline on the same frames.")
flags.DEFINE_string("images", None, "The frames, for the baseline (default: the sequence folder beside --gt).")
flags.DEFINE_string("output_json", None, "Write the report as JSON here (its folder is made when missing).")
flags.mark_flags_as_required(["pred", "gt"])


def main(argv):
    common.start(argv)
    images = None
    if FLAGS.baseline == "otsu":
        # <dataset>/NN_GT/SEG -> <dataset>/NN
        truth_dir = os.path.dirname(os.path.normpath(FLAGS.gt))
        images = FLAGS.images or os.path.join(os.path.dirname(truth_dir), os.path.basename(truth_dir).split("_")[0])
    try:
        report = evaluate.evaluate(FLAGS.pred, FLAGS.gt, images)
    except ValueError as error:
        common.fail("cellseg-evaluate", error)
    print(evaluate.markdown(report))
    if report["missing_predictions"]:
        print(f"\n{len(report['missing_predictions'])} reference frame(s) had no prediction and scored 0")
    if FLAGS.output_json:
        folder = os.path.dirname(FLAGS.output_json) or "."
        try:
            os.makedirs(folder, exist_ok=True)
            with open(FLAGS.output_json, "w") as handle:
                json.dump(report, handle, indent=2)
        except OSError as error:
            reason = f"{folder} is a file" if isinstance(error, FileExistsError) else error.strerror or error
            common.fail("cellseg-evaluate", f"{FLAGS.output_json}: cannot write the report there ({reason}); "
                        "the scores are printed above")


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
