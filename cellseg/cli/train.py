"""cellseg-train: train a U-Net on converted records, on one device, all local GPUs or many hosts.

    cellseg-train --records_dir=records/Fluo-N2DH-GOWT1 --model_dir=runs/gowt1
    cellseg-train --flagfile=runs/gowt1/flags.txt          # the same run again

The global batch is --per_replica_batch_size times the number of replicas.
Everything the run makes lands in --model_dir (`cellseg/run_folder.py`); a run
started again on the same --model_dir resumes after its last finished epoch.
The flags are made from the leaves of `training.Config` (its nested network,
objective and augmentation configs included), with their defaults: the command
and the Python API train the same run.
"""

from __future__ import annotations

import os

from absl import flags

from cellseg.cli import keras_backend  # noqa: I001 (first: it sets KERAS_BACKEND before Keras is imported)
from cellseg.cli import quiet  # noqa: I001 (then TensorFlow loads without its start-up lines)
from cellseg import callbacks, distribute, instances, losses, plan, run_folder, targets, training
from cellseg.cli import common

# Help and bounds of each flag; its name, type and default come from the config dataclasses.
HELP = {
    "records_dir": ("Converted dataset: dataset.json and train-*/val-* shards.", {}),
    "model_dir": ("Run folder: checkpoints, backup, tensorboard, metrics, export.", {}),
    "epochs": ("Epochs to train.", {"lower_bound": 1}),
    "steps_per_epoch": ("Steps per epoch; 0: about one pass over the training frames.", {"lower_bound": 0}),
    "per_replica_batch_size": ("Patches per replica and step; global batch = this x replicas.", {"lower_bound": 1}),
    "patch_size": ("Square training patch side; a multiple of 2**depth. Planned from the data unless given: "
                   "three mean cell diameters, 128 to 256 px (plan.json).", {"lower_bound": 1}),
    "base_filters": ("Filters of the first block (paper: 64).", {"lower_bound": 1}),
    "depth": ("Downscale blocks (paper: 4).", {"lower_bound": 1}),
    "dropout": ("Dropout after each convolution.", {"lower_bound": 0, "upper_bound": 0.9}),
    "transposed": ("Learnt transposed-convolution upsampling, not bilinear.", {}),
    "batch_norm_momentum": ("Batch-norm moving-average momentum (0.9 settles within a few hundred steps).",
                            {"lower_bound": 0, "upper_bound": 1}),
    "learning_rate": ("Adam learning rate.", {"lower_bound": 0}),
    "foreground_patches": ("Share of training patches centred on a random cell pixel (the others at random "
                           "places). Planned unless given: 1/3 where fewer than two cells touch a random patch "
                           "on average and cells cover under 5% of the pixels, else 0.", {"lower_bound": 0, "upper_bound": 1}),
    "input_scale": ("Frames resampled by this factor before the network, in training and prediction. Planned "
                    "unless given: 1 where the mean cell is 8-128 px across, else the factor that brings it to "
                    "the nearer bound (0.25 to 2).", {"lower_bound": 0, "upper_bound": 4}),
    "weight_averaging": ("Momentum of a moving average of the weights (Polyak averaging) that validation, the "
                         "checkpoints and the final model use; 0: off. Planned unless given: 0.95 where the "
                         "foreground is under 1 % of the pixels (sparse frames), else 0.", {"lower_bound": 0, "upper_bound": 0.999}),
    "clip_norm": ("Gradients scaled down to this global norm when larger (0: no clipping).", {"lower_bound": 0}),
    "class_weight_power": ("Class weights: fraction ** -power, mean 1 over the pixels; 1 balances the classes "
                           "fully, 0 weighs them alike. Planned unless given: 0.5, lowered until no class weighs "
                           "more than 10.", {"lower_bound": 0}),
    "target": ("What the network learns: binary (cell / background), three_class (background / interior / "
               "boundary) or distance (cell and neighbour distance maps; needs records with distance maps).",
               {"enum_values": targets.TARGETS}),
    "loss": ("Cross-entropy and overlap terms (binary, three_class); distance regresses whatever this is.",
             {"enum_values": losses.KINDS}),
    "tversky_alpha": ("Tversky weight of false positives.", {}),
    "tversky_beta": ("Tversky weight of false negatives.", {}),
    "bce_weight": ("Weight of the weighted cross-entropy term.", {"lower_bound": 0}),
    "overlap_weight": ("Weight of the Tversky or Dice term. Planned unless given (with --loss=bce_tversky): 1 "
                       "where cells cover under 5% of the pixels, else 0 (cross-entropy alone).", {"lower_bound": 0}),
    "symmetries": ("Random flips and quarter turns.", {}),
    "elastic_sigma": ("Elastic deformation: std of the coarse displacements (px).", {"lower_bound": 0}),
    "elastic_points": ("Elastic deformation: coarse grid points per side.", {"lower_bound": 2}),
    "rotation": ("Max small rotation, degrees.", {"lower_bound": 0}),
    "scale": ("Max relative zoom.", {"lower_bound": 0, "upper_bound": 0.9}),
    "gamma": ("Intensity: max |log gamma|.", {"lower_bound": 0}),
    "contrast": ("Intensity: max relative contrast change.", {"lower_bound": 0}),
    "brightness": ("Intensity: max brightness offset (image in [0, 1]).", {"lower_bound": 0}),
    "noise": ("Intensity: std of added Gaussian noise.", {"lower_bound": 0}),
    "seed": ("Seed of initialisation, data order and augmentation.", {}),
    "strategy": ("auto: all local GPUs (MirroredStrategy), else one device; multi_worker reads TF_CONFIG.",
                 {"enum_values": distribute.STRATEGIES}),
    "cpu_replicas": ("Split the CPU into N logical devices (MirroredStrategy without GPUs).", {"lower_bound": 0}),
    "mixed_precision": ("bfloat16 compute where the devices have it (float16 on GPUs older than compute "
                        "capability 8.0), float32 weights.", {}),
    "jit_compile": ("Compile the training step with XLA.", {}),
    "early_stopping_patience": ("Stop after this many epochs without a better validation Dice.", {"lower_bound": 1}),
    "reduce_lr_patience": ("Halve the learning rate after this many epochs without a lower validation loss.",
                           {"lower_bound": 1}),
    "validation_images": ("Validation tiles shown in TensorBoard each epoch.", {"lower_bound": 0}),
    "profile_batch": ("Profile this batch in TensorBoard (0: off).", {"lower_bound": 0}),
    "shuffle_buffer": ("Patches in the shuffle buffer of the training stream.", {"lower_bound": 1}),
    "tune_postprocessing": ("At the end, choose the post-processing thresholds that maximise SEG on the whole "
                            "validation frames (postprocess.json).", {}),
    "lr_schedule": ("constant: --learning_rate, halved after --reduce_lr_patience epochs without a lower "
                    "validation loss; cosine: warmed up over the first 5% of the steps, then cosine decay to 0.",
                    {"enum_values": training.LR_SCHEDULES}),
    "best_by": ("What picks checkpoints/best.keras: seg, the SEG of whole validation frames segmented each epoch "
                "(no test-time augmentation, the best of a few post-processing settings); dice, the validation "
                "tiles' pixel Dice.", {"enum_values": training.BEST_BY}),
}


def _define(name: str, default):
    text, options = HELP[name]
    if "enum_values" in options:
        return flags.DEFINE_enum(name, default, options["enum_values"], text)
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float}.get(type(default))
    return (define or flags.DEFINE_string)(name, default, text, **options)


_FLAGS = [_define(name, default) for name, default in training.flat_fields()]
BACKEND = keras_backend.define(__name__)
flags.mark_flags_as_required(["records_dir", "model_dir"])


def config_from_flags() -> training.Config:
    return training.Config.from_flat(**{holder.name: holder.value for holder in _FLAGS})


def flagfile_text(config: training.Config | None = None) -> str:
    """Every cellseg-train flag with its value (the planned ones as `config` has them): a --flagfile that
    reproduces the run."""
    if config is not None:
        for name, value in config.flat().items():
            flags.FLAGS[name].value = value
    return "".join(flags.FLAGS[holder.name].serialize() + "\n" for holder in [*_FLAGS, BACKEND])


def main(argv):
    common.start(argv)
    try:
        keras_backend.check(BACKEND.value)
        config = config_from_flags()
        distribute.prepare_devices(config.strategy, config.cpu_replicas)  # before anything runs an op
        if config.strategy != "multi_worker" and "TF_CONFIG" not in os.environ:
            quiet.first_half_cast()
        config, chosen = training.planned(config, {name for name in plan.PLANNED if flags.FLAGS[name].present})
        flagfile = os.path.join(config.model_dir, run_folder.FLAGS)
        written_at_start = callbacks.WriteAtStart(flagfile, flagfile_text(config)) if distribute.is_chief() else None
        result = training.train(config, extra_callbacks=[c for c in (written_at_start, callbacks.StopOnInterrupt()) if c],
                                chosen=chosen)
    except (ValueError, RuntimeError) as error:
        common.fail("cellseg-train", error)
    except KeyboardInterrupt:
        common.fail("cellseg-train", f"interrupted; the same command resumes after the last finished epoch "
                                     f"(--flagfile={os.path.join(flags.FLAGS.model_dir, run_folder.FLAGS)})")
    if result:
        print("\nvalidation (best checkpoint, inference mode):")
        for name, value in result["validation"].items():
            print(f"  {name:<16} {value:.4f}")
        tuned = result.get("postprocess")
        if tuned:
            print(f"\npost-processing ({tuned['target']}) tuned on {tuned['frames']} validation frame(s): "
                  f"{instances.Postprocess.from_dict(tuned).describe()}; SEG {tuned['seg']:.3f}")
        print(f"\nrun folder: {config.model_dir} (metrics.json, postprocess.json, checkpoints/best.keras, export/)")
        print(f"TensorBoard: tensorboard --logdir {os.path.join(config.model_dir, 'tensorboard')}")


def run():
    common.run(main, __name__)


if __name__ == "__main__":
    run()
