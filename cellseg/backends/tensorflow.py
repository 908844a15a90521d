"""TensorFlow's room (`cellseg.backends`): stateless Philox draws, the same numbers on every device."""

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
