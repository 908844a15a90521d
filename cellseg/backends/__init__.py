"""What differs between Keras backends on the device, one room per backend.

cellseg's on-device code (`augment`, `target_ops`, `losses`, `metrics`) is
written in `keras.ops`; the few things Keras leaves to each backend live here,
each backend in its own module with the same functions:

- `split_seed(seed, num)`: `num` independent stateless seeds [num, 2] from one;
- `uniform(shape, seed, low, high, dtype)`: stateless uniform draws (integers in
  [low, high) for an integer dtype);
- `normal(shape, seed)`: stateless N(0, 1) draws of a static shape;
- `normal_like(values, seed)`: stateless N(0, 1) draws of `values`' shape, whose
  batch may be unknown until run (TensorFlow's is a Box-Muller transform of
  uniforms: XLA on the CPU compiles its normal op some 20 times slower);
- `batch_gather(flat, indices)`: `flat` [B, N, C] read at `indices` [B, ...]
  (integer, in [0, N)) -> [B, ..., C].

Each room also holds the Segmenter's training and test steps (`Steps`), whose
signatures differ between backends, and where training runs, for
`cellseg.distribute`: `prepare_devices`, `make_strategy`, `multi_worker` (whether a strategy spans
TF_CONFIG's hosts) and `gpu_capability`
(the first GPU's compute capability, which sets the mixed-precision dtype). `current()` is the room of the backend
Keras runs on, found when this package is imported. The draws differ between
backends (TensorFlow's Philox, JAX's Threefry); everything computed from them
is the same code.
"""

from __future__ import annotations

import importlib

import keras

ROOMS = {"tensorflow": "cellseg.backends.tensorflow", "jax": "cellseg.backends.jax"}


def _room():
    name = keras.backend.backend()
    if name not in ROOMS:
        raise ImportError(f"cellseg runs on Keras' {' or '.join(ROOMS)} backend, not {name}; set KERAS_BACKEND")
    return importlib.import_module(ROOMS[name])


# Keras chooses its backend once, when it is imported: the room is found once, here, so that nothing traced
# into a graph (by tf.function's AutoGraph, or jax.jit) ever imports.
_ROOM = _room()


def current():
    """The module of the backend Keras runs on."""
    return _ROOM
