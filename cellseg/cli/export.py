"""cellseg-export: a trained run as a BioImage Model Zoo package, for Fiji (deepImageJ), napari, ilastik.

    cellseg-export --model=runs/gowt1 --output=gowt1.zip
    cellseg-export --model=runs/gowt1 --output=gowt1.zip --test_image=data/X/02/t000.tif --check
    cellseg-export --model=gowt1.zip --check            # test a package written earlier

Writes a bioimage.io model package (format 0.5; `cellseg.model_zoo`), validated
by the bioimageio.spec library as it is written, with Keras v3, TensorFlow
SavedModel and ONNX weights; --check then runs bioimageio.core's model test on
it (the test input through every weight format, compared with the test output).
`cellseg-predict --model=gowt1.zip` segments with it (--engine=onnx: by ONNX
Runtime). Needs the optional extra: pip install 'cellseg[bioimageio]'.
"""

from __future__ import annotations

import os
import tempfile

from absl import flags

from cellseg.cli import quiet  # noqa: I001 (first: TensorFlow loads without its start-up lines)
quiet.require_tensorflow("cellseg-export")  # SavedModels are TensorFlow's
import keras  # noqa: I001, E402 (after quiet: keras imports TensorFlow)
from cellseg import model_zoo  # noqa: E402
from cellseg.cli import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "The run folder to export (its checkpoints/best.keras and postprocess.json), or "
                    "with --check alone a package to test.")
flags.DEFINE_enum("format", "bioimageio", ["bioimageio"], "Package format: bioimage.io model format 0.5.")
flags.DEFINE_string("output", None, "The package to write, NAME.zip (required unless --model is a package).")
flags.DEFINE_string("test_image", None, "A raw 2-D TIFF frame for the package's test input and cover (default: "
                    "the first validation frame of the run's records).")
flags.DEFINE_string("name", "", "The package's name (default: cellseg <target> U-Net (<run folder>)).")
flags.DEFINE_string("description", "", "One paragraph on what the model segments (default: a generic one).")
flags.DEFINE_list("authors", ["cellseg"], "The authors, comma-separated.")
flags.DEFINE_bool("check", False, "Run bioimageio.core's model test on the package after writing it.")
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists (only once the new package is complete).")
flags.mark_flags_as_required(["model"])


def main(argv):
    common.start(argv)
    if FLAGS.model.endswith(".zip"):
        if FLAGS.output or not FLAGS.check:
            common.fail("cellseg-export", f"--model={FLAGS.model} is a package: it can only be tested (--check, "
                        "without --output); export takes a run folder")
        if not os.path.isfile(FLAGS.model):
            common.fail("cellseg-export", f"{FLAGS.model}: no such package")
        return check(FLAGS.model)
    if not FLAGS.output:
        common.fail("cellseg-export", "--output is required: the package to write, NAME.zip")
    about = model_zoo.About(name=FLAGS.name, description=FLAGS.description, authors=tuple(FLAGS.authors))
    quiet.first_half_cast()  # the records' float16 maps, read for the test frame: without oneDNN's notice
    try:
        status = model_zoo.export(FLAGS.model, FLAGS.output, FLAGS.test_image, about, FLAGS.overwrite)
    except ValueError as error:
        common.fail("cellseg-export", error)
    print(f"wrote {FLAGS.output} ({os.path.getsize(FLAGS.output) / 1e6:.1f} MB); bioimageio.spec: {status}")
    if FLAGS.check:
        check(FLAGS.output)


def check(path: str) -> None:
    """bioimageio.core's model test of the package at `path`, a line per check; fails in one line naming the
    first failed check."""
    if not FLAGS.verbose:
        keras.utils.disable_interactive_logging()  # the model test's predictions: no progress bars
    here, package = os.getcwd(), os.path.abspath(path)
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)  # bioimageio.core unzips the SavedModel into the working directory
        try:
            passed, lines, failure = model_zoo.test(package)
        except ValueError as error:
            common.fail("cellseg-export", error)
        finally:
            os.chdir(here)
    print("\n".join(lines))
    if not passed:
        common.fail("cellseg-export", f"{path}: bioimageio.core's model test failed: {failure}")


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
