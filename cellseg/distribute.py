"""Where training runs: the strategy of Keras' backend and the hosts of TF_CONFIG.

The only module that chooses devices (through the room of Keras' backend,
`cellseg.backends`). `make_strategy` must come before anything starts the
backend's runtime (MultiWorkerMirroredStrategy configures its
collectives at start-up, and splitting the CPU into logical devices only works
before). The chief writes the run folder; other workers write their own copies
under `workers/<task>/` (`own_folder`).
"""

from __future__ import annotations

import contextlib
import json
import os

from cellseg import backends

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


def make_strategy(name: str, cpu_replicas: int = 0):
    """Where training runs, chosen by the room of Keras' backend (`cellseg.backends`): a tf.distribute strategy
    on TensorFlow, Keras' DataParallel over the local devices on JAX. It must come before anything starts the
    backend's runtime.

    auto: all local GPUs, one device otherwise (or `cpu_replicas` logical CPU
    devices when given); mirrored: all local devices; multi_worker: the hosts of
    TF_CONFIG (TensorFlow only); one_device: the first GPU, else the CPU.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown --strategy={name}; expected one of {', '.join(STRATEGIES)}")
    return backends.current().make_strategy(name, cpu_replicas)


def prepare_devices(name: str, cpu_replicas: int = 0) -> None:
    """The device settings that must precede the backend's runtime (the CPU split into `cpu_replicas` logical
    devices); `make_strategy` calls it, and a command calls it before anything of its own runs an op."""
    backends.current().prepare_devices(name, cpu_replicas)


def mixed_policy() -> str:
    """Keras' mixed-precision policy for the devices training runs on: bfloat16 compute where they have it (GPUs
    of compute capability 8.0 or newer, TPUs, CPUs), float16 on older GPUs (where Keras scales the loss);
    float32 weights either way. Call it after `make_strategy`."""
    capability = backends.current().gpu_capability()
    return "mixed_float16" if capability is not None and capability < (8, 0) else "mixed_bfloat16"


def multi_worker(strategy) -> bool:
    """Whether `strategy` spans the hosts of TF_CONFIG."""
    return backends.current().multi_worker(strategy)


def fitting(strategy):
    """The context `fit` runs in: Keras' distribution on JAX (it shards each batch over the devices); none on
    TensorFlow, where the model built in the strategy's scope distributes itself."""
    return getattr(strategy, "fitting", contextlib.nullcontext)()


def describe(strategy) -> str:
    """The strategy's name as the log gives it."""
    return getattr(strategy, "description", None) or (
        "MultiWorkerMirroredStrategy" if multi_worker(strategy) else type(strategy).__name__)


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
