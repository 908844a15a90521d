"""Training a U-Net on converted records under tf.distribute: the model, its step, its run folder.

`train(config)` does the whole run: builds the strategy (the one place that
knows about distribution), the input pipelines, the model and its callbacks,
fits, then writes `metrics.json`, tunes the post-processing thresholds on the
whole validation frames (`postprocess.json`) and writes the SavedModel export.
The training step augments each replica's batch on its own device
(`cellseg.augment`) and derives the target from the augmented labels there
(`cellseg.targets`) before the forward pass, with a stateless seed made of the
run's seed, the replica and the step, so a run is reproducible and replicas see
different deformations.

Run folder (`model_dir`):

    checkpoints/best.keras   the model of the best validation Dice
    backup/                  BackupAndRestore state: a killed run resumes here
    tensorboard/             scalars per epoch (train/, validation/) and images
    log.csv                  one row of metrics per epoch
    flags.txt                the command line's flags (written by cellseg-train)
    metrics.json             best and final validation metrics (inference mode)
    postprocess.json         the target and the post-processing thresholds tuned on validation, with the SEG reached
    export/                  SavedModel for serving: image in [0, 1] -> the target's outputs
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import math
import os
import sys
import zipfile

import keras
import numpy as np
import tensorflow as tf

from cellseg import augment, data, losses, metrics, model, targets

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


@dataclasses.dataclass(frozen=True)
class Config:
    records_dir: str
    model_dir: str
    epochs: int = 50
    steps_per_epoch: int = 0  # 0: one pass over the training frames' patches
    per_replica_batch_size: int = 8
    patch_size: int = 256
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.0
    transposed: bool = False
    batch_norm_momentum: float = 0.9
    learning_rate: float = 1e-4
    target: str = "three_class"  # the best measured (docs/TARGETS.md)
    loss: str = "bce_tversky"
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    bce_weight: float = 1.0
    overlap_weight: float = 1.0
    augmentation: augment.Config = augment.Config()
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

    def __post_init__(self):
        if self.patch_size < 2**self.depth or self.patch_size % 2**self.depth:
            raise ValueError(f"--patch_size={self.patch_size} must be a multiple of 2**depth = {2**self.depth}")
        if self.per_replica_batch_size < 1:
            raise ValueError(f"--per_replica_batch_size must be positive, got {self.per_replica_batch_size}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be positive, got {self.epochs}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown --strategy={self.strategy}; expected one of {', '.join(STRATEGIES)}")
        if self.target not in targets.TARGETS:
            raise ValueError(f"unknown --target={self.target}; expected one of {', '.join(targets.TARGETS)}")
        if self.loss not in losses.KINDS:
            raise ValueError(f"unknown --loss={self.loss}; expected one of {', '.join(losses.KINDS)}")


# --- distribution ------------------------------------------------------------------


def make_strategy(name: str, cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The tf.distribute strategy; the only place that chooses devices.

    auto: MirroredStrategy over all local GPUs, one device otherwise (or over
    `cpu_replicas` logical CPU devices when given); mirrored: MirroredStrategy;
    multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG; one_device: the
    first GPU, else the CPU.
    """
    if name == "multi_worker":
        # Before anything starts the runtime: collectives are configured at start-up.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas:
        split_cpu(cpu_replicas)
    gpus = tf.config.list_logical_devices("GPU")
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0])
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if name == "mirrored" or cpu_replicas > 1:
        return tf.distribute.MirroredStrategy(cpus[: max(cpu_replicas, 1)])
    return tf.distribute.OneDeviceStrategy(cpus[0])


def multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def split_cpu(replicas: int) -> None:
    """Split the CPU into `replicas` logical devices (before TensorFlow starts its runtime)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) >= replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as error:
        raise RuntimeError(f"cannot split the CPU into {replicas} devices once TensorFlow has started: {error}")


def _tf_config() -> tuple[dict, dict]:
    """(cluster, task) of the TF_CONFIG environment variable; empty when unset."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    return config.get("cluster", {}), config.get("task", {})


def worker_count() -> int:
    """Hosts in this run: the workers (and chief) of TF_CONFIG, else 1."""
    cluster, _ = _tf_config()
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def worker_index() -> int:
    """This process's place among the hosts (the chief first), 0 without TF_CONFIG."""
    cluster, task = _tf_config()
    offset = len(cluster.get("chief", [])) if task.get("type") == "worker" else 0
    return offset + int(task.get("index", 0))


def is_chief() -> bool:
    """Whether this process writes the run folder's shared artefacts."""
    cluster, task = _tf_config()
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


# --- the model and its step ---------------------------------------------------------


@keras.saving.register_keras_serializable(package="cellseg")
class Segmenter(keras.Model):
    """A U-Net whose training step augments each replica's batch on its device.

    Batches are (image, labels, maps) (`cellseg.data`); after augmentation the
    target reaches the loss and the metrics as `targets.pack`'s channels. The
    network has one output channel per channel of its `target`.
    """

    def __init__(self, patch_size: int, base_filters: int = 16, depth: int = 4, dropout: float = 0.0,
                 transposed: bool = False, momentum: float = 0.9, augmentation: dict | None = None,
                 seed: int = 0, target: str = "binary", class_weights=(1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.target = targets.check(target)
        self.class_weights = tuple(float(w) for w in class_weights)
        self.architecture = dict(size=patch_size, base_filters=base_filters, depth=depth, dropout=dropout,
                                 transposed=transposed, momentum=momentum, outputs=targets.CHANNELS[target])
        self.unet = model.build_unet(**self.architecture)
        self.augmentation = augment.Config(**(augmentation or {}))
        self.seed = seed

    def call(self, images, training=False):
        return self.unet(images, training=training)

    def train_step(self, batch):
        images, labels, maps = batch
        images, labels, maps = augment.augment(images, labels, maps, self._step_seed(), self.augmentation)
        return self._logs(super().train_step((images, self.pack(labels, maps))))

    def test_step(self, batch):
        # Validation batches end in padding tiles (`data.validation_dataset`): the
        # packed weight 0 keeps them out of the loss and the metrics, and the loss
        # is averaged over the real tiles, where Keras would weigh it by batch size.
        images, labels, maps = batch
        y_true = self.pack(labels, maps)
        y_pred = self(images, training=False)
        real = tf.reduce_sum(tf.cast(tf.logical_not(data.is_padding(labels)), tf.float32))
        self._loss_tracker.update_state(tf.reduce_mean(self.loss.call(y_true, y_pred)), sample_weight=real)
        return self._logs(self.compute_metrics(images, y_true, y_pred))

    def _logs(self, logs):
        # Keras 3 averages multi-worker logs along an axis 0 that scalars lack
        # (tensorflow/tensorflow#72388): give each a length-one axis to average over.
        if multi_worker(self.distribute_strategy):
            return {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def pack(self, labels, maps):
        """`y_true` of the loss and metrics from (augmented) labels and maps."""
        return targets.pack(self.target, labels, maps, self.class_weights)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds the loss and metrics from the first batch's shapes. It would
        # average a distributed batch over the replicas with a collective (which
        # fails under MultiWorkerMirrored) and take (image, labels, maps) for
        # (x, y, sample_weight), while they read the packed `y_true`: build them
        # from one replica's shapes and the packed channels instead.
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break
        images, labels = (self.distribute_strategy.experimental_local_results(t)[0] for t in data_batch[:2])
        packed = keras.KerasTensor(tuple(labels.shape[:-1]) + (targets.PACKED_CHANNELS[self.target],), "float32")
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=(keras.KerasTensor(images.shape, "float32"), packed))

    def _step_seed(self):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.stack([tf.cast(self.seed, tf.int64) * 1_000_003 + tf.cast(replica, tf.int64),
                         tf.cast(self.optimizer.iterations, tf.int64)])

    def get_config(self):
        architecture = dict(self.architecture)
        architecture.pop("outputs")
        return {**super().get_config(), "patch_size": architecture.pop("size"), **architecture,
                "augmentation": dataclasses.asdict(self.augmentation), "seed": self.seed,
                "target": self.target, "class_weights": list(self.class_weights)}


TUNE_FRAMES = 32


def output_model(segmenter: Segmenter, size: int | None = None) -> keras.Model:
    """The U-Net with its target's activation on top (`targets.activate`), optionally for `size` x `size` inputs.

    Outputs: the cell probability (binary), the background / interior / boundary
    probabilities (three_class), or the cell and neighbour distances (distance).
    """
    unet = segmenter.unet
    if size is not None and size != unet.input.shape[1]:
        unet = model.build_unet(**{**segmenter.architecture, "size": size})
        unet.set_weights(segmenter.unet.get_weights())
    outputs = keras.layers.Activation(targets.ACTIVATIONS[segmenter.target], dtype="float32", name="outputs")(unet.output)
    return keras.Model(unet.input, outputs, name=f"cellseg_{segmenter.target}")


# --- callbacks --------------------------------------------------------------------------


class ValidationImages(keras.callbacks.Callback):
    """Each epoch, a few validation tiles in TensorBoard: image | target | prediction.

    The target and prediction panels show the cell mask (binary), the classes
    (three_class: background black, interior grey, boundary white) or the cell
    distance (distance).
    """

    def __init__(self, log_dir: str, batch, count: int):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "images"))
        real = tf.logical_not(data.is_padding(batch[1]))
        self.images, self.labels, self.maps = (tf.boolean_mask(tensor, real)[:count] for tensor in batch)

    def on_epoch_end(self, epoch, logs=None):
        target = self.model.target
        outputs = targets.activate(target, self.model(self.images, training=False))
        truth, predicted = targets.picture(target, self.model.pack(self.labels, self.maps), outputs)
        panels = tf.concat([self.images, truth, predicted], axis=2)  # side by side
        with self.writer.as_default():
            tf.summary.image("validation: image | target | prediction", panels, step=epoch,
                             max_outputs=len(self.images))
        self.writer.flush()


class Backup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose files are replaced only once whole.

    Keras writes the backup in place, so a kill during the write leaves a torn
    file and no earlier state. Here both files are written beside the backup
    and renamed over it: a kill at any instant leaves a backup to resume from.
    """

    def _save_model(self):
        # Overrides Keras' private writer (tests/test_training.py checks it still exists).
        tf.io.gfile.makedirs(self.backup_dir)
        partial_weights = os.path.join(self.backup_dir, "partial.weights.h5")
        partial_metadata = self._training_metadata_path + ".partial"
        self.model.save_weights(partial_weights, overwrite=True)
        with tf.io.gfile.GFile(partial_metadata, "w") as handle:
            handle.write(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
        tf.io.gfile.rename(partial_weights, self._weights_path, overwrite=True)
        tf.io.gfile.rename(partial_metadata, self._training_metadata_path, overwrite=True)


class BestCheckpoint(keras.callbacks.Callback):
    """The model of the best validation Dice, at `path`, written beside it and renamed over it.

    `best` is the best Dice of earlier runs in the same folder, so a resumed run
    keeps their checkpoint until it does better.
    """

    def __init__(self, path: str, best: float = -math.inf):
        super().__init__()
        self.path, self.best = path, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_dice")
        if value is None or not value > self.best:
            return
        self.best = float(value)
        partial = self.path[: -len(".keras")] + ".partial.keras"
        tf.io.gfile.makedirs(os.path.dirname(self.path))
        self.model.save(partial)
        tf.io.gfile.rename(partial, self.path, overwrite=True)


def callbacks_for(config: Config, validation_batch, chief: bool) -> list[keras.callbacks.Callback]:
    model_dir = own_folder(config.model_dir, chief)
    board = os.path.join(model_dir, "tensorboard")
    earlier = [row["val_dice"] for row in read_log(model_dir) if "val_dice" in row]
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        Backup(os.path.join(model_dir, "backup"), delete_checkpoint=False),
        BestCheckpoint(os.path.join(model_dir, "checkpoints", "best.keras"), max(earlier, default=-math.inf)),
        keras.callbacks.EarlyStopping(monitor="val_dice", mode="max", patience=config.early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=config.reduce_lr_patience,
                                          min_lr=config.learning_rate / 100),
        keras.callbacks.CSVLogger(os.path.join(model_dir, "log.csv"), append=True),
        keras.callbacks.TensorBoard(board, profile_batch=config.profile_batch or 0),
    ]
    if config.validation_images and chief:
        callbacks.append(ValidationImages(board, validation_batch, config.validation_images))
    return callbacks


def own_folder(model_dir: str, chief: bool) -> str:
    """Where this process writes: the run folder (the chief), else workers/<task>/ in it."""
    return model_dir if chief else os.path.join(model_dir, "workers", _task_name())


def _task_name() -> str:
    _, task = _tf_config()
    return f"{task.get('type', 'worker')}-{task.get('index', 0)}"


# --- the run ---------------------------------------------------------------------------


def validation_input(strategy: tf.distribute.Strategy, records: data.Records, patch_size: int,
                     per_replica_batch_size: int, distances: bool = False):
    """(distributed validation dataset, steps per pass, tile count) for `strategy`.

    Each host builds its own input pipeline (`distribute_datasets_from_function`)
    of full per-replica batches, padded as `data.validation_dataset` says, so
    every replica of every host gets a full batch at every one of the same
    number of steps.
    """
    tiles = data.validation_tile_count(records, patch_size)
    pipelines = worker_count() if multi_worker(strategy) else 1
    replicas = strategy.num_replicas_in_sync // pipelines
    steps = data.validation_steps(tiles, per_replica_batch_size, pipelines, replicas)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        if context.num_input_pipelines != pipelines:
            raise RuntimeError(f"{context.num_input_pipelines} input pipelines where TF_CONFIG names {pipelines} hosts")
        return data.validation_dataset(records, patch_size, per_replica_batch_size, distances, pipelines,
                                       context.input_pipeline_id, replicas, tiles)

    return strategy.distribute_datasets_from_function(dataset_fn), steps, tiles


@contextlib.contextmanager
def locked(folder: str):
    """Hold `folder/.lock` while training: a second training into the same folder is refused.

    The lock is the operating system's (flock): it ends with the process, even
    a killed one. Folders on remote file systems (gs://, ...) are not locked.
    """
    if "://" in folder:
        yield
        return
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ValueError(f"{folder} is in use by another training (process {holder}); wait for it to end "
                             "or choose another --model_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


ARCHITECTURE = ("patch_size", "base_filters", "depth", "transposed", "target")


def check_resumable(config: Config) -> None:
    """ValueError in one line when the run folder holds a checkpoint of another architecture or target."""
    path = os.path.join(config.model_dir, "checkpoints", "best.keras")
    if not tf.io.gfile.exists(path):
        return
    try:
        with tf.io.gfile.GFile(path, "rb") as handle, zipfile.ZipFile(handle) as archive:
            saved = json.loads(archive.read("config.json"))["config"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: unreadable ({error}); move it away to start again in this folder") from None
    differ = [f"--{name}={saved[name]} (given {getattr(config, name)})"
              for name in ARCHITECTURE if name in saved and saved[name] != getattr(config, name)]
    if differ:
        raise ValueError(f"{config.model_dir} holds a run with {', '.join(differ)}; resume it with its own flags "
                         f"(--flagfile={os.path.join(config.model_dir, 'flags.txt')}) or choose another --model_dir")


def check_patch_size(records: data.Records, patch_size: int) -> None:
    largest = max((max(size) for size in records.description["frame_sizes"]), default=0)
    if patch_size > largest:
        raise ValueError(f"--patch_size={patch_size} is larger than every frame (largest side {largest} px)")


def train(config: Config, extra_callbacks=(), log=print) -> dict:
    """Run the training of `config`; returns the content of metrics.json."""
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = make_strategy(config.strategy, config.cpu_replicas)  # before anything starts the runtime
    chief = is_chief()
    with locked(own_folder(config.model_dir, chief)):
        if chief:
            check_resumable(config)
        return _fit(config, strategy, chief, extra_callbacks, log)


def _fit(config: Config, strategy: tf.distribute.Strategy, chief: bool, extra_callbacks, log) -> dict:
    records = data.open_records(config.records_dir)
    check_patch_size(records, config.patch_size)
    replicas = strategy.num_replicas_in_sync
    global_batch = config.per_replica_batch_size * replicas
    steps = config.steps_per_epoch or max(1, data.patches_per_epoch(records, config.patch_size) // global_batch)
    kind = "MultiWorkerMirroredStrategy" if multi_worker(strategy) else type(strategy).__name__
    log(f"{replicas} replica(s) ({kind}); global batch {global_batch} = "
        f"{config.per_replica_batch_size} per replica x {replicas}; {steps} steps per epoch")
    distances = config.target == "distance"
    if distances and not records.has_distances:
        raise ValueError(f"{config.records_dir} holds no distance maps; convert again with "
                         "cellseg-convert --distance_maps, or train another --target")
    class_weights = records.class_weights(config.target)
    names = ("background", "interior", "boundary") if config.target == "three_class" else ("background", "cells")
    log(f"target {config.target}; class weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(names, class_weights))
        + f" (training foreground fraction {records.description['foreground_fraction']:.1%})")

    workers = worker_count()
    train_set = data.training_dataset(records, config.patch_size, global_batch, seed=config.seed,
                                      shuffle_buffer=config.shuffle_buffer, num_workers=workers, distances=distances,
                                      worker_index=worker_index())
    val_set, val_steps, tiles = validation_input(strategy, records, config.patch_size,
                                                 config.per_replica_batch_size, distances)
    log(f"validation: {tiles} tile(s) of {config.patch_size} px, {val_steps} step(s) per pass on every host")
    validation_batch = next(iter(data.validation_dataset(records, config.patch_size, max(config.validation_images, 1),
                                                         distances, tile_count=tiles)))
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        segmenter = Segmenter(config.patch_size, config.base_filters, config.depth, config.dropout,
                              config.transposed, config.batch_norm_momentum,
                              dataclasses.asdict(config.augmentation), config.seed, config.target, class_weights)
        segmenter.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=losses.SegmentationLoss(config.loss, config.tversky_alpha, config.tversky_beta,
                                         config.bce_weight, config.overlap_weight, config.target),
            metrics=metrics.pixel_metrics(config.target),
            jit_compile=config.jit_compile,
        )
    # Keras distributes the training set over the replicas itself (each batch is global).
    segmenter.fit(
        train_set,
        validation_data=val_set,
        validation_steps=val_steps,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=[*callbacks_for(config, validation_batch, chief), *extra_callbacks],
        verbose=1 if sys.stdout.isatty() else 2,
        shuffle=False,  # the input pipeline shuffles; Keras cannot shuffle a tf.data stream
    )
    if not chief:
        return {}
    return finish(config, records, log)


def read_log(model_dir: str) -> list[dict]:
    """The rows of log.csv (every epoch, across resumed runs, in order), values as floats.

    Lines that are not numbers (a repeated header, a line torn by a kill) are
    skipped; of an epoch logged twice, the last row counts.
    """
    path = os.path.join(model_dir, "log.csv")
    if not os.path.exists(path):
        return []
    epochs = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                values = {k: float(v) for k, v in row.items() if k and isinstance(v, str) and v != ""}
            except ValueError:  # a header written again, or a line torn by a kill
                continue
            if "epoch" in values:
                epochs[int(values["epoch"])] = values  # an epoch run again replaces the earlier row
    return [epochs[epoch] for epoch in sorted(epochs)]


def finish(config: Config, records: data.Records, log=print) -> dict:
    """Evaluate the best checkpoint in inference mode; write metrics.json, postprocess.json and the export."""
    best_path = os.path.join(config.model_dir, "checkpoints", "best.keras")
    best = keras.models.load_model(best_path)
    tiles = data.validation_tile_count(records, config.patch_size)
    val_set = data.validation_dataset(records, config.patch_size, config.per_replica_batch_size,
                                      distances=config.target == "distance", tile_count=tiles)
    evaluated = best.evaluate(val_set, steps=data.validation_steps(tiles, config.per_replica_batch_size),
                              return_dict=True, verbose=0)
    epochs = read_log(config.model_dir)
    best_row = max(epochs, key=lambda row: row.get("val_dice", -1.0)) if epochs else {}
    result = {
        "best_checkpoint": best_path,
        "best_epoch": int(best_row["epoch"]) + 1 if best_row else None,
        "validation": {k: float(v) for k, v in evaluated.items()},
        "final_epoch": epochs[-1] if epochs else {},
        "epochs_run": len(epochs),
        "target": best.target,
        "class_weights": list(best.class_weights),
        "records_dir": config.records_dir,
    }
    if config.tune_postprocessing:
        result["postprocess"] = tune_postprocessing(best, records, config.model_dir, log)
    with open(os.path.join(config.model_dir, "metrics.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    output_model(best).export(os.path.join(config.model_dir, "export"), verbose=False)
    return result


def tune_postprocessing(segmenter: Segmenter, records: data.Records, model_dir: str, log=print) -> dict:
    """Choose the post-processing thresholds that maximise SEG on the whole validation frames.

    The frames are predicted as `cellseg-predict` does (overlap-tile at its
    default tile size); the result goes to `postprocess.json`. Of more than
    `TUNE_FRAMES` validation frames, every n-th is used (at most `TUNE_FRAMES`).
    """
    from cellseg import instances, predict
    from cellseg.progress import Progress

    depth = segmenter.architecture["depth"]
    tile = -(-predict.DEFAULT_TILE // 2**depth) * 2**depth
    network = output_model(segmenter, tile)
    # At most TUNE_FRAMES frames, evenly spread: memory stays bounded on long sequences.
    count = records.description["counts"]["val"]
    stride = max(1, -(-count // TUNE_FRAMES))
    outputs, references = [], []
    predicting = Progress("predicting validation frames")
    for index, (image, labels) in enumerate(data.validation_frames(records)):
        if index % stride:
            continue
        predicted = predict.predict_outputs(network.predict_on_batch, image, tile, predict.DEFAULT_OVERLAP)
        outputs.append(predicted)
        references.append(labels)
        predicting(len(outputs), -(-count // stride))
    settings, seg = instances.tune(outputs, references, segmenter.target,
                                   progress=Progress("tuning post-processing on validation frames"))
    tuned = {**settings.to_dict(), "seg": seg, "frames": len(outputs),
             "objects": int(sum(len(np.unique(r[r > 0])) for r in references))}
    with open(os.path.join(model_dir, "postprocess.json"), "w") as handle:
        json.dump(tuned, handle, indent=2)
    log(f"post-processing tuned on {len(outputs)} validation frame(s): "
        + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.to_dict().items())
        + f"; SEG {seg:.3f}")
    return tuned
