"""JAX's room (`cellseg.backends`): stateless Threefry draws from raw key data [2] uint32."""

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
