"""JAX's room (`cellseg.backends`): stateless Threefry draws from raw key data [2] uint32, the Segmenter's
stateless training and test steps, and where training runs (Keras' DataParallel over the local devices).

Compatibility code: `Steps` overrides Keras' private `_symbolic_build` (tested
in tests/test_segmenter.py, which fails when Keras changes it).
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import keras


def _key(seed):
    return jax.random.wrap_key_data(jnp.asarray(seed).astype(jnp.uint32), impl="threefry2x32")


def split_seed(seed, num: int):
    return jax.random.key_data(jax.random.split(_key(seed), num))


def uniform(shape, seed, low, high, dtype="float32"):
    if jnp.issubdtype(jnp.dtype(dtype), jnp.integer):
        return jax.random.randint(_key(seed), tuple(shape), low, high, dtype=dtype)
    return jax.random.uniform(_key(seed), tuple(shape), dtype=dtype, minval=low, maxval=high)


def normal(shape, seed):
    return jax.random.normal(_key(seed), tuple(shape))


def normal_like(values, seed):
    return jax.random.normal(_key(seed), values.shape, dtype=values.dtype)


def batch_gather(flat, indices):
    return jax.vmap(lambda values, where: values[where])(flat, indices)


class Steps:
    """`segmenter.Segmenter`'s steps on JAX: stateless, on the global batch (`keras.distribution.DataParallel`
    shards it over the devices; the draws are per sample, so the devices' parts differ without a replica id)."""

    def train_step(self, state, batch):
        iterations = state[2][self._iterations_index()]  # the optimizer's variables, as the step sees them
        seed = jnp.stack([jnp.uint32((self.seed * self.SEED_STRIDE) % 2**32), iterations.astype(jnp.uint32)])
        return super().train_step(state, self.augmented(batch, seed))

    def test_step(self, state, batch):
        # Padding tiles weigh 0 in the loss and the metrics (each sample's loss is the batch's, so the tracker's
        # mean over samples stays the loss of the real tiles).
        images, y_true, _ = self.validation_pair(batch)
        return super().test_step(state, (images, y_true))

    def _symbolic_build(self, iterator=None, data_batch=None):
        # Keras builds the loss and metrics from the first batch, taking (image, labels, maps) for (x, y,
        # sample_weight), while they read the packed `y_true`: build them from the packed channels instead.
        if data_batch is None:
            for _, _, batches in iterator:
                data_batch = batches[0] if isinstance(batches, (list, tuple)) else next(batches)
                break
        images, labels = data_batch[:2]
        super()._symbolic_build(data_batch=self.symbolic_batch(images.shape, labels.shape))

    def _iterations_index(self):
        return next(i for i, v in enumerate(self.optimizer.variables) if v is self.optimizer.iterations)


def gpu_capability() -> tuple[int, int] | None:
    """The first GPU's CUDA compute capability, None without a GPU (a TPU's or the CPU's)."""
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        return None
    return tuple(int(part) for part in str(getattr(gpus[0], "compute_capability", "0.0")).split(".")[:2])


def prepare_devices(name: str, cpu_replicas: int = 0) -> None:
    """The CPU split into `cpu_replicas` devices, before JAX starts its backend."""
    if name == "multi_worker":
        raise ValueError("--strategy=multi_worker runs on TensorFlow only (TF_CONFIG); on JAX, train on one host")
    if cpu_replicas:
        try:
            jax.config.update("jax_num_cpu_devices", cpu_replicas)
        except RuntimeError as error:
            raise RuntimeError(f"cannot split the CPU into {cpu_replicas} devices once JAX has started: {error}")


def multi_worker(strategy) -> bool:
    return False  # one host: --strategy=multi_worker is refused (`prepare_devices`)


def make_strategy(name: str, cpu_replicas: int = 0) -> DataParallel:
    """Keras' DataParallel over all local devices (auto, mirrored: the GPUs where there are some, else the
    CPU's `cpu_replicas` devices), or over the first device (one_device)."""
    prepare_devices(name, cpu_replicas)
    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    devices = gpus or jax.devices("cpu")
    if name == "one_device" or (not gpus and name == "auto" and cpu_replicas <= 1):
        devices = devices[:1]
    return DataParallel(devices)


class DataParallel:
    """`keras.distribution.DataParallel` over `devices`, with the few members of a tf.distribute strategy that
    training uses: the replica count and a scope to build and fit in (the numpy input pipeline, `cellseg.batches`,
    makes global batches; Keras splits each along the devices)."""

    def __init__(self, devices):
        self.devices = list(devices)
        self.num_replicas_in_sync = len(self.devices)
        platform = self.devices[0].platform
        self.description = (f"DataParallel over {len(self.devices)} {platform} devices on JAX" if len(self.devices) > 1
                            else f"one {platform} device on JAX")
        self._distribution = keras.distribution.DataParallel(devices=self.devices) if len(self.devices) > 1 else None

    def scope(self):
        return self._distribution.scope() if self._distribution else contextlib.nullcontext()

    fitting = scope  # `fit` shards each batch over the devices under the distribution
