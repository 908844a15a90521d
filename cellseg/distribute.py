"""Where training runs: the tf.distribute strategy, the hosts of TF_CONFIG, and the validation set over replicas.

The only module that chooses devices. `make_strategy` must come before anything
starts TensorFlow's runtime (MultiWorkerMirroredStrategy configures its
collectives at start-up, and splitting the CPU into logical devices only works
before). The chief writes the run folder; other workers write their own copies
under `workers/<task>/` (`own_folder`).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from cellseg import data

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


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
    prepare_devices(name, cpu_replicas)
    gpus = tf.config.list_logical_devices("GPU")
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0])
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    if name == "mirrored" or cpu_replicas > 1:
        return tf.distribute.MirroredStrategy(cpus[: max(cpu_replicas, 1)])
    return tf.distribute.OneDeviceStrategy(cpus[0])


def prepare_devices(name: str, cpu_replicas: int = 0) -> None:
    """The device settings that must precede TensorFlow's runtime (the CPU split into `cpu_replicas` logical
    devices); `make_strategy` calls it, and a command calls it before anything of its own runs an op."""
    if cpu_replicas and name != "multi_worker":
        split_cpu(cpu_replicas)


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


def tf_config() -> tuple[dict, dict]:
    """(cluster, task) of the TF_CONFIG environment variable; empty when unset."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    return config.get("cluster", {}), config.get("task", {})


def worker_count() -> int:
    """Hosts in this run: the workers (and chief) of TF_CONFIG, else 1."""
    cluster, _ = tf_config()
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def worker_index() -> int:
    """This process's place among the hosts (the chief first), 0 without TF_CONFIG."""
    cluster, task = tf_config()
    offset = len(cluster.get("chief", [])) if task.get("type") == "worker" else 0
    return offset + int(task.get("index", 0))


def is_chief() -> bool:
    """Whether this process writes the run folder's shared artefacts."""
    cluster, task = tf_config()
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


def own_folder(model_dir: str, chief: bool) -> str:
    """Where this process writes: the run folder (the chief), else workers/<task>/ in it."""
    return model_dir if chief else os.path.join(model_dir, "workers", task_name())


def task_name() -> str:
    _, task = tf_config()
    return f"{task.get('type', 'worker')}-{task.get('index', 0)}"


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
