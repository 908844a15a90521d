"""TensorFlow's room (`cellseg.backends`): stateless Philox draws, the same numbers on every device, and the
Segmenter's training and test steps under tf.distribute.

Compatibility code: two Keras private hooks are used in `Steps`, each marked
where it is (`_maybe_symbolic_build`, the loss tracker `_loss_tracker`) and
tested in tests/test_segmenter.py, which fails when Keras changes them;
setup.cfg pins Keras to the versions tested.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

ALG = "philox"


def split_seed(seed, num: int):
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num)


def uniform(shape, seed, low, high, dtype="float32"):
    return tf.random.stateless_uniform(shape, seed, low, high, dtype=tf.as_dtype(dtype), alg=ALG)


def normal(shape, seed):
    return tf.random.stateless_normal(shape, seed, alg=ALG)


def normal_like(values, seed):
    """N(0, 1) samples of `values`' shape by the Box-Muller transform of stateless uniforms.

    Same distribution as tf.random.stateless_normal, but XLA on the CPU compiles
    that op into code some 20 times slower than uniforms plus this arithmetic.
    """
    shape = values.shape
    if shape.is_fully_defined():
        count = int(np.prod(shape.as_list()))
    else:  # a batch of unknown size (a multi-worker replica's part)
        count = tf.reduce_prod(tf.shape(values))
    half = (count + 1) // 2
    u = tf.random.stateless_uniform(tf.stack([2, half]), seed, alg=ALG)
    radius = tf.sqrt(-2.0 * tf.math.log(1.0 - u[0]))  # 1 - u lies in (0, 1]: log is finite
    angle = 2.0 * math.pi * u[1]
    drawn = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=0)[:count]
    return tf.reshape(drawn, tf.shape(values))


def batch_gather(flat, indices):
    return tf.gather(flat, indices, batch_dims=1)


def multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def make_strategy(name: str, cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The tf.distribute strategy (`cellseg.distribute.make_strategy` says which).

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


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's CUDA compute capability, None without a GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))


def prepare_devices(name: str, cpu_replicas: int = 0) -> None:
    """The device settings that must precede TensorFlow's runtime (the CPU split into `cpu_replicas` logical
    devices); `make_strategy` calls it, and a command calls it before anything of its own runs an op."""
    if cpu_replicas and name != "multi_worker":
        split_cpu(cpu_replicas)


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


class Steps:
    """`segmenter.Segmenter`'s steps on TensorFlow: each replica augments its part of the batch, with the replica
    in its seed."""

    def train_step(self, batch):
        return self._logs(super().train_step(self.augmented(batch, self._step_seed())))

    def test_step(self, batch):
        # Validation batches end in padding tiles: the packed weight 0 keeps them out of the loss and the
        # metrics, and the loss is averaged over the real tiles, where Keras would weigh it by batch size.
        images, y_true, real = self.validation_pair(batch)
        y_pred = self(images, training=False)
        self._loss_tracker.update_state(tf.reduce_mean(self.loss.call(y_true, y_pred)), sample_weight=real)
        return self._logs(self.compute_metrics(images, y_true, y_pred))

    def _logs(self, logs):
        # Keras 3 averages multi-worker logs along an axis 0 that scalars lack
        # (tensorflow/tensorflow#72388): give each a length-one axis to average over.
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

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
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=self.symbolic_batch(images.shape, labels.shape))

    def _step_seed(self):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.stack([tf.cast(self.seed, tf.int64) * self.SEED_STRIDE + tf.cast(replica, tf.int64),
                         tf.cast(self.optimizer.iterations, tf.int64)])
