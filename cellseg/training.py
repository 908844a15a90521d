"""A training run on converted records: its config and the fit loop.

`train(config)` does the whole run: builds the strategy (`cellseg.distribute`),
the input pipelines (`cellseg.inputs`: tf.data on TensorFlow, numpy batches on JAX), the model (`cellseg.segmenter`) and its
callbacks (`cellseg.callbacks`), fits, then writes `metrics.json`, tunes the
post-processing thresholds on the whole validation frames (`cellseg.tuning`)
and writes the SavedModel export, all in the run folder (`cellseg.run_folder`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys

import keras

from cellseg import (augment, board, callbacks, distribute, errors, inputs, losses, metrics, model, plan, preprocess,
                     records as records_lib, run_folder, segmenter, targets, tuning)


@dataclasses.dataclass(frozen=True)
class Config:
    """A training run. `network`, `objective` and `augmentation` are the nested configs of
    `model`, `losses` and `augment`; every leaf is a cellseg-train flag of the same name."""

    records_dir: str
    model_dir: str
    network: model.Architecture = model.Architecture()
    objective: losses.Config = losses.Config()
    augmentation: augment.Config = augment.Config()
    target: str = targets.DEFAULT
    epochs: int = 50
    steps_per_epoch: int = 0  # 0: one pass over the training frames' patches
    per_replica_batch_size: int = 8
    learning_rate: float = 1e-4
    clip_norm: float = 0.0  # 0: no clipping
    weight_averaging: float = 0.0  # momentum of the weights' moving average that validation and checkpoints use
    foreground_patches: float = 0.0  # share of training patches centred on a cell pixel
    input_scale: float = 1.0  # frames resampled by this before the network (`cellseg.resampling`)
    class_weight_power: float = preprocess.CLASS_WEIGHT_POWER
    seed: int = 0
    strategy: str = "auto"
    cpu_replicas: int = 0
    mixed_precision: bool = False
    jit_compile: bool = False
    early_stopping_patience: int = 30
    reduce_lr_patience: int = 10
    validation_images: int = 3
    profile_batch: int = 0
    shuffle_buffer: int = 256
    tune_postprocessing: bool = True
    best_by: str = "seg"
    lr_schedule: str = "constant"

    def __post_init__(self):
        if self.per_replica_batch_size < 1:
            raise ValueError(f"--per_replica_batch_size must be positive, got {self.per_replica_batch_size}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be positive, got {self.epochs}")
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(f"unknown --strategy={self.strategy}; expected one of {', '.join(distribute.STRATEGIES)}")
        if self.target not in targets.TARGETS:
            raise ValueError(f"unknown --target={self.target}; expected one of {', '.join(targets.TARGETS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown --lr_schedule={self.lr_schedule}; expected one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.weight_averaging < 1:
            raise ValueError(f"--weight_averaging must be in [0, 1), got {self.weight_averaging}")
        if not 0 < self.input_scale <= MAX_INPUT_SCALE:
            raise ValueError(f"--input_scale must be in (0, {MAX_INPUT_SCALE:g}], got {self.input_scale}")
        if self.best_by not in BEST_BY:
            raise ValueError(f"unknown --best_by={self.best_by}; expected one of {', '.join(BEST_BY)}")

    def flat(self) -> dict:
        """Every leaf by name (the flags' names), the nested configs' fields in their place."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NESTED}
        for name in NESTED:
            values.update(dataclasses.asdict(getattr(self, name)))
        return values

    @classmethod
    def flat_defaults(cls) -> list[tuple[str, object]]:
        return flat_fields()

    @classmethod
    def from_flat(cls, **values) -> Config:
        """A config from leaf names (the flags' names): patch_size=..., loss=..., rotation=..., epochs=..."""
        nested = {name: kind(**{f.name: values.pop(f.name) for f in dataclasses.fields(kind) if f.name in values})
                  for name, kind in NESTED.items()}
        return cls(**nested, **values)


# constant: --learning_rate, halved on a plateau of the validation loss; cosine: warmed up linearly over
# WARMUP of the steps, then cosine decay to 0 at the last step (as nnU-Net decays over a fixed budget).
LR_SCHEDULES = ("constant", "cosine")
WARMUP = 0.05
MAX_INPUT_SCALE = 4.0
# What picks the best checkpoint: the SEG of whole validation frames each epoch, or the tiles' pixel Dice.
BEST_BY = ("seg", "dice")
# Whole validation frames segmented each epoch for `val_seg` (every n-th of more).
SEG_FRAMES = 8
SEG_PIXELS = 2**21  # and no more pixels than this: large frames, fewer


NESTED = {"network": model.Architecture, "objective": losses.Config, "augmentation": augment.Config}


def flat_fields() -> list[tuple[str, object]]:
    """(name, default) of every leaf of `Config`, the nested configs' fields in their place; None: required."""
    leaves = []
    for field in dataclasses.fields(Config):
        if field.name in NESTED:
            leaves += [(f.name, f.default) for f in dataclasses.fields(NESTED[field.name])]
        else:
            leaves.append((field.name, None if field.default is dataclasses.MISSING else field.default))
    return leaves


# The flags that shape the network: a run folder's checkpoint is resumed only with the same.
ARCHITECTURE = ("patch_size", "base_filters", "depth", "transposed", "target")


def check_patch_size(records: records_lib.Records, patch_size: int) -> None:
    largest = max((max(size) for size in records.frame_sizes), default=0)
    if patch_size > largest:
        at = f" at --input_scale={records.scale:g}" if records.scale != 1 else ""
        raise ValueError(f"--patch_size={patch_size} is larger than every frame (largest side {largest} px{at})")


def planned(config: Config, given: set[str] | None = None) -> tuple[Config, plan.Plan]:
    """`config` with the planned settings of its records that `given` does not name (`cellseg.plan`), and the plan.
    It runs no TensorFlow op: a command plans before the strategy is made."""
    return plan.make(config, records_lib.read_description(config.records_dir), given)


def train(config: Config, extra_callbacks=(), log=print, chosen: plan.Plan | None = None) -> dict:
    """Run the training of `config`; returns the content of metrics.json.

    `chosen`: the plan that `config` already carries (`planned`); without it, the
    settings that `config` leaves at their defaults are planned here.
    """
    strategy = distribute.make_strategy(config.strategy, config.cpu_replicas)  # before anything starts the runtime
    if config.mixed_precision:
        policy = distribute.mixed_policy()
        keras.mixed_precision.set_global_policy(policy)
        log(f"mixed precision: {policy} ({policy.split('_')[1]} compute, float32 weights)")
    if chosen is None:
        config, chosen = planned(config)
    chief = distribute.is_chief()
    with run_folder.locked(distribute.own_folder(config.model_dir, chief)):
        if chief:
            shape = {**dataclasses.asdict(config.network), "target": config.target}
            run_folder.check_resumable(config.model_dir, {name: shape[name] for name in ARCHITECTURE})
            chosen.write(config.model_dir)
        for line in chosen.lines():
            log(line)
        return _fit(config, strategy, chief, extra_callbacks, log)


def _fit(config: Config, strategy, chief: bool, extra_callbacks, log) -> dict:
    records = records_lib.open_records(config.records_dir, config.input_scale)
    check_patch_size(records, config.network.patch_size)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.per_replica_batch_size * replicas
    patch_size = config.network.patch_size
    steps = config.steps_per_epoch or max(1, records_lib.patches_per_epoch(records, patch_size) // global_batch)
    log(f"{replicas} replica(s) ({distribute.describe(strategy)}); global batch {global_batch} = "
        f"{config.per_replica_batch_size} per replica x {replicas}; {steps} steps per epoch")
    distances = targets.get(config.target).distances
    if distances and not records.has_distances:
        raise ValueError(f"{config.records_dir} holds no distance maps; convert again with "
                         "cellseg-convert --distance_maps, or train another --target")
    class_weights = records.class_weights(config.target, config.class_weight_power)
    names = targets.get(config.target).class_names
    log(f"target {config.target}; class weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(names, class_weights))
        + f" (training foreground fraction {records.description['foreground_fraction']:.1%})")

    pipeline = inputs.pipeline()
    train_set = pipeline.training_input(records, patch_size, global_batch, config.seed, config.shuffle_buffer,
                                        distances, config.foreground_patches)
    tiles = records_lib.validation_tile_count(records, patch_size)
    val_set, val_steps = pipeline.validation_input(strategy, records, patch_size, config.per_replica_batch_size,
                                                   distances, tiles)
    log(f"validation: {tiles} tile(s) of {patch_size} px, {val_steps} step(s) per pass on every host")
    validation_batch = pipeline.validation_batch(records, patch_size, max(config.validation_images, 1), distances,
                                                 tiles)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        net = segmenter.Segmenter(**dataclasses.asdict(config.network), augmentation=dataclasses.asdict(config.augmentation),
                                  seed=config.seed, target=config.target, class_weights=class_weights)
        net.compile(
            optimizer=keras.optimizers.Adam(learning_rate(config, steps), global_clipnorm=config.clip_norm or None,
                                            use_ema=config.weight_averaging > 0,
                                            ema_momentum=config.weight_averaging or 0.99),
            loss=config.objective.for_target(config.target),
            metrics=metrics.pixel_metrics(config.target),
            jit_compile=config.jit_compile,
        )
    # Keras distributes the training set over the replicas itself (each batch is global).
    with distribute.fitting(strategy):
        net.fit(
            train_set,
            validation_data=val_set,
            validation_steps=val_steps,
            epochs=config.epochs,
            steps_per_epoch=steps,
            callbacks=[*callbacks_for(config, records, validation_batch, chief), *extra_callbacks],
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # the input pipeline shuffles; Keras cannot shuffle a stream
        )
    if not chief:
        return {}
    return finish(config, records, tiles, log)


def learning_rate(config: Config, steps_per_epoch: int):
    """The optimizer's learning rate: a number, or the cosine schedule over the run's steps."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    total = steps_per_epoch * config.epochs
    warmup = min(total - 1, max(1, round(WARMUP * total)))
    return keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=config.learning_rate,
                                                  warmup_steps=warmup)


def callbacks_for(config: Config, records: records_lib.Records, validation_batch, chief: bool) -> list[keras.callbacks.Callback]:
    model_dir = distribute.own_folder(config.model_dir, chief)
    log_dir = os.path.join(model_dir, run_folder.TENSORBOARD)
    scoring = []
    if config.best_by == "seg" and chief:
        frames = records_lib.validation_sample(records, SEG_FRAMES, SEG_PIXELS)
        if any(labels.any() for _, labels in frames):  # SEG needs reference cells
            scoring = [callbacks.ValidationSEG(frames, config.target)]
    monitor = "val_seg" if scoring else "val_dice"
    earlier = [row[monitor] for row in run_folder.read_log(model_dir) if monitor in row]
    chosen = [
        keras.callbacks.TerminateOnNaN(),
        # The weights' moving average in place for validation and for every epoch-end callback after it.
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.weight_averaging else []),
        *scoring,  # before the callbacks that read val_seg
        callbacks.BestCheckpoint(os.path.join(model_dir, run_folder.BEST), monitor, max(earlier, default=-math.inf)),
        keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=config.early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.reduce_lr_patience,
                                          min_lr=config.learning_rate / 100)
        if config.lr_schedule == "constant" else callbacks.LearningRate(),
        keras.callbacks.CSVLogger(os.path.join(model_dir, run_folder.LOG), append=True),
        board.EpochScalars(log_dir),
        # Keras' own (TensorFlow's summaries) only to profile a batch: the scalars are EpochScalars'.
        *([keras.callbacks.TensorBoard(os.path.join(log_dir, "profile"), profile_batch=config.profile_batch)]
          if config.profile_batch else []),
        # Last: the backup marks the epoch done only once its checkpoint and log row are written, so a kill
        # at any point leaves a run that resumes (at worst by running that epoch again).
        callbacks.Backup(os.path.join(model_dir, run_folder.BACKUP), delete_checkpoint=False),
    ]
    if config.validation_images and chief:
        chosen.append(callbacks.ValidationImages(log_dir, validation_batch, config.validation_images))
    return chosen


def finish(config: Config, records: records_lib.Records, tiles: int, log=print) -> dict:
    """Evaluate the best checkpoint in inference mode; write metrics.json, postprocess.json and the export (where
    TensorFlow is installed: it writes SavedModels)."""
    best_path = os.path.join(config.model_dir, run_folder.BEST)
    best = keras.models.load_model(best_path)
    val_set, val_steps = inputs.pipeline().validation_set(records, config.network.patch_size,
                                                          config.per_replica_batch_size,
                                                          targets.get(config.target).distances, tiles)
    evaluated = best.evaluate(val_set, steps=val_steps, return_dict=True, verbose=0)
    epochs = run_folder.read_log(config.model_dir)
    monitor = "val_seg" if any("val_seg" in row for row in epochs) else "val_dice"
    best_row = max(epochs, key=lambda row: row.get(monitor, -1.0)) if epochs else {}
    result = {
        "best_checkpoint": best_path,
        "best_epoch": int(best_row["epoch"]) + 1 if best_row else None,
        "best_by": monitor,
        "validation": {k: float(v) for k, v in evaluated.items()},
        "final_epoch": epochs[-1] if epochs else {},
        "epochs_run": len(epochs),
        "target": best.target,
        "class_weights": list(best.class_weights),
        "records_dir": config.records_dir,
    }
    if config.tune_postprocessing:
        result["postprocess"] = tuning.tune(best, records, config.model_dir, log)
    with open(os.path.join(config.model_dir, run_folder.METRICS), "w") as handle:
        json.dump(result, handle, indent=2)
    if errors.TENSORFLOW_INSTALLED:
        segmenter.output_model(best).export(os.path.join(config.model_dir, run_folder.EXPORT), verbose=False)
    else:
        log(errors.needs_tensorflow(f"{run_folder.EXPORT}/ (a SavedModel for serving)") + "; not written (the "
            "checkpoint predicts on either backend)")
    return result
