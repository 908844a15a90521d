"""JAX's room (`cellseg.backends`): stateless Threefry draws from raw key data [2] uint32, and the Segmenter's
stateless training and test steps.

Compatibility code: `Steps` overrides Keras' private `_symbolic_build` (tested
in tests/test_segmenter.py, which fails when Keras changes it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
