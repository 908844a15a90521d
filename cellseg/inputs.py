"""The input pipeline of the backend training runs on, chosen here once.

On TensorFlow, tf.data (`cellseg.data`): parallel reads, tf.distribute's
per-host pipelines, TF_CONFIG's hosts. On JAX, numpy batches read without
TensorFlow (`cellseg.batches`), so that a machine with JAX alone trains. Both
modules give the same functions:

- `training_input(records, patch_size, global_batch, seed, shuffle_buffer, distances, foreground_share)`:
  endless shuffled global batches of random patches;
- `validation_input(strategy, records, patch_size, per_replica_batch_size, distances, tile_count)`:
  (the fixed validation tiles in full batches for every replica, steps per pass);
- `validation_set(records, patch_size, batch_size, distances, tile_count)`: (the same tiles in batches for
  one device, steps per pass), to evaluate the best checkpoint;
- `validation_batch(records, patch_size, count, distances, tile_count)`: the first tiles, for pictures.
"""

from __future__ import annotations

import importlib

import keras

# By name, loaded on first use as `cellseg.backends` loads its rooms: training on JAX never loads TensorFlow,
# even where it is installed.
PIPELINES = {"tensorflow": "cellseg.data", "jax": "cellseg.batches"}


def pipeline():
    """The module of the input pipeline for Keras' backend."""
    return importlib.import_module(PIPELINES[keras.backend.backend()])
