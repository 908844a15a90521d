"""cellseg-train: train a U-Net on converted records, on one device, all local GPUs or many hosts.

    cellseg-train --records_dir=records/Fluo-N2DH-GOWT1 --model_dir=runs/gowt1
    cellseg-train --flagfile=runs/gowt1/flags.txt          # the same run again

The global batch is --per_replica_batch_size times the number of replicas.
Everything the run makes lands in --model_dir (see cellseg/training.py); a run
started again on the same --model_dir resumes after its last finished epoch.
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

from cellseg import augment, losses, targets, training  # noqa: E402

_DEFAULTS = training.Config(records_dir="", model_dir="")
_FLAGS = [
    flags.DEFINE_string("records_dir", None, "Converted dataset: dataset.json and train-*/val-* shards."),
    flags.DEFINE_string("model_dir", None, "Run folder: checkpoints, backup, tensorboard, metrics, export."),
    flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Epochs to train.", lower_bound=1),
    flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0: about one pass over the training frames.",
                         lower_bound=0),
    flags.DEFINE_integer("per_replica_batch_size", _DEFAULTS.per_replica_batch_size,
                         "Patches per replica and step; global batch = this x replicas.", lower_bound=1),
    flags.DEFINE_integer("patch_size", _DEFAULTS.patch_size, "Square training patch side; a multiple of 2**depth.",
                         lower_bound=1),
    flags.DEFINE_integer("base_filters", _DEFAULTS.base_filters, "Filters of the first block (paper: 64).",
                         lower_bound=1),
    flags.DEFINE_integer("depth", _DEFAULTS.depth, "Downscale blocks (paper: 4).", lower_bound=1),
    flags.DEFINE_float("dropout", _DEFAULTS.dropout, "Dropout after each convolution.", lower_bound=0, upper_bound=0.9),
    flags.DEFINE_bool("transposed", _DEFAULTS.transposed, "Learnt transposed-convolution upsampling, not bilinear."),
    flags.DEFINE_float("batch_norm_momentum", _DEFAULTS.batch_norm_momentum,
                       "Batch-norm moving-average momentum (0.9 settles within a few hundred steps).",
                       lower_bound=0, upper_bound=1),
    flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Adam learning rate.", lower_bound=0),
    flags.DEFINE_enum("target", _DEFAULTS.target, targets.TARGETS,
                      "What the network learns: binary (cell / background), three_class (background / interior / "
                      "boundary) or distance (cell and neighbour distance maps; needs records with distance maps)."),
    flags.DEFINE_enum("loss", _DEFAULTS.loss, losses.KINDS,
                      "Cross-entropy and overlap terms (binary, three_class); distance regresses whatever this is."),
    flags.DEFINE_float("tversky_alpha", _DEFAULTS.tversky_alpha, "Tversky weight of false positives."),
    flags.DEFINE_float("tversky_beta", _DEFAULTS.tversky_beta, "Tversky weight of false negatives."),
    flags.DEFINE_float("bce_weight", _DEFAULTS.bce_weight, "Weight of the weighted cross-entropy term.",
                       lower_bound=0),
    flags.DEFINE_float("overlap_weight", _DEFAULTS.overlap_weight, "Weight of the Tversky or Dice term.",
                       lower_bound=0),
    flags.DEFINE_bool("symmetries", True, "Random flips and quarter turns."),
    flags.DEFINE_float("elastic_sigma", 10.0, "Elastic deformation: std of the coarse displacements (px).",
                       lower_bound=0),
    flags.DEFINE_integer("elastic_points", 3, "Elastic deformation: coarse grid points per side.", lower_bound=2),
    flags.DEFINE_float("rotation", 10.0, "Max small rotation, degrees.", lower_bound=0),
    flags.DEFINE_float("scale", 0.1, "Max relative zoom.", lower_bound=0, upper_bound=0.9),
    flags.DEFINE_float("gamma", 0.2, "Intensity: max |log gamma|.", lower_bound=0),
    flags.DEFINE_float("contrast", 0.1, "Intensity: max relative contrast change.", lower_bound=0),
    flags.DEFINE_float("brightness", 0.05, "Intensity: max brightness offset (image in [0, 1]).", lower_bound=0),
    flags.DEFINE_float("noise", 0.02, "Intensity: std of added Gaussian noise.", lower_bound=0),
    flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of initialisation, data order and augmentation."),
    flags.DEFINE_enum("strategy", _DEFAULTS.strategy, training.STRATEGIES,
                      "auto: all local GPUs (MirroredStrategy), else one device; multi_worker reads TF_CONFIG."),
    flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into N logical devices (MirroredStrategy without GPUs).",
                         lower_bound=0),
    flags.DEFINE_bool("mixed_precision", False, "float16 compute, float32 weights (GPUs)."),
    flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA."),
    flags.DEFINE_integer("early_stopping_patience", _DEFAULTS.early_stopping_patience,
                         "Stop after this many epochs without a better validation Dice.", lower_bound=1),
    flags.DEFINE_integer("reduce_lr_patience", _DEFAULTS.reduce_lr_patience,
                         "Halve the learning rate after this many epochs without a lower validation loss.",
                         lower_bound=1),
    flags.DEFINE_integer("validation_images", _DEFAULTS.validation_images,
                         "Validation tiles shown in TensorBoard each epoch.", lower_bound=0),
    flags.DEFINE_integer("profile_batch", 0, "Profile this batch in TensorBoard (0: off).", lower_bound=0),
    flags.DEFINE_bool("tune_postprocessing", True, "At the end, choose the post-processing thresholds that maximise "
                      "SEG on the whole validation frames (postprocess.json)."),
]
flags.mark_flags_as_required(["records_dir", "model_dir"])


def config_from_flags() -> training.Config:
    values = {holder.name: holder.value for holder in _FLAGS}
    augmentation = augment.Config(**{name: values.pop(name) for name in (
        "symmetries", "elastic_sigma", "elastic_points", "rotation", "scale", "gamma", "contrast", "brightness",
        "noise")})
    return training.Config(augmentation=augmentation, **values)


def flagfile_text() -> str:
    """Every cellseg-train flag with its value: a --flagfile that reproduces the run."""
    return "".join(flags.FLAGS[holder.name].serialize() + "\n" for holder in _FLAGS)


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) during fit ends the run at the end of the current batch, as a KeyboardInterrupt.

    Python raises KeyboardInterrupt in whatever code runs next, and a
    finalizer that TensorFlow runs on garbage collection swallows it: the run
    went on. Noted here and raised from a callback, it always stops the run. A
    second Ctrl-C stops at once.
    """

    def __init__(self):
        super().__init__()
        self.interrupted = False
        self.previous = None

    def on_train_begin(self, logs=None):
        self.previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame):
        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _check(self, *args, **kwargs):
        if self.interrupted:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check

    def on_train_end(self, logs=None):
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)


class WriteFlags(keras.callbacks.Callback):
    """Write flags.txt once the run starts (the chief): a call that fails leaves the folder's flags.txt alone."""

    def __init__(self, model_dir: str):
        super().__init__()
        self.model_dir = model_dir

    def on_train_begin(self, logs=None):
        if training.is_chief():
            with open(os.path.join(self.model_dir, "flags.txt"), "w") as handle:
                handle.write(flagfile_text())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:  # TensorFlow logs every collective at INFO
        absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        config = config_from_flags()
        result = training.train(config, extra_callbacks=[WriteFlags(config.model_dir), StopOnInterrupt()])
    except (ValueError, RuntimeError) as error:
        sys.exit(f"cellseg-train: {error}")
    except KeyboardInterrupt:
        sys.exit(f"cellseg-train: interrupted; the same command resumes after the last finished epoch "
                 f"(--flagfile={os.path.join(flags.FLAGS.model_dir, 'flags.txt')})")
    if result:
        print("\nvalidation (best checkpoint, inference mode):")
        for name, value in result["validation"].items():
            print(f"  {name:<16} {value:.4f}")
        tuned = result.get("postprocess")
        if tuned:
            print(f"\npost-processing ({tuned['target']}) tuned on {tuned['frames']} validation frame(s): "
                  f"mask threshold {tuned['mask_threshold']:g}, seed threshold {tuned['seed_threshold']:g}, "
                  f"min size {tuned['min_size']} px; SEG {tuned['seg']:.3f}")
        print(f"\nrun folder: {config.model_dir} (metrics.json, postprocess.json, checkpoints/best.keras, export/)")
        print(f"TensorBoard: tensorboard --logdir {os.path.join(config.model_dir, 'tensorboard')}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
