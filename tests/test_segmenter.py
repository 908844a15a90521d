"""The Keras private hooks the Segmenter's steps rely on (`cellseg.backends.tensorflow`, `.jax`) are still
Keras' own."""

import inspect

import keras
import numpy as np
import pytest

from cellseg import segmenter


@pytest.mark.tensorflow  # keras.Model is the TensorFlow trainer there
def test_the_keras_build_hook_segmenter_overrides_still_exists_with_its_signature():
    hook = getattr(keras.Model, "_maybe_symbolic_build", None)
    assert hook is not None, "Keras no longer has Model._maybe_symbolic_build; see cellseg/backends/tensorflow.py"
    assert list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"]


def test_the_keras_build_the_jax_steps_override_still_exists_with_its_signature():
    from keras.src.trainers.trainer import Trainer  # the JAX trainer's base, importable on any backend

    hook = getattr(Trainer, "_symbolic_build", None)
    assert hook is not None, "Keras no longer has Trainer._symbolic_build; see cellseg/backends/jax.py"
    assert list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"]


def test_the_loss_tracker_the_test_step_weighs_is_in_the_model_metrics():
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="binary")
    net.compile(loss=keras.losses.MeanSquaredError())
    assert isinstance(net._loss_tracker, keras.metrics.Mean) and net._loss_tracker in net.metrics
    net._loss_tracker.update_state(2.0, sample_weight=3.0)
    net._loss_tracker.update_state(5.0, sample_weight=0.0)  # a batch of padding only
    assert float(net._loss_tracker.result()) == 2.0


def test_a_network_refreshed_after_training_predicts_as_a_model_built_anew():
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="three_class")
    tiles = np.random.default_rng(0).random((2, 48, 64, 1), np.float32)
    network = segmenter.Network(net)
    before = network(tiles)  # builds and keeps a 48 x 64 model holding a copy of the weights
    net.unet.set_weights([w + 0.05 for w in net.unet.get_weights()])  # as an epoch of training would
    np.testing.assert_array_equal(network(tiles), before)  # the kept copy is stale
    network.refresh()
    fresh = segmenter.output_model(net, (48, 64)).predict_on_batch(tiles)
    assert np.abs(fresh - before).max() > 1e-3
    np.testing.assert_allclose(network(tiles), fresh, atol=1e-6)
