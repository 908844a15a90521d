"""The on-device augmentation, targets, losses and metrics give the same values on Keras' JAX backend as on
TensorFlow (the random draws aside, which are each backend's own)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import backend_values

from cellseg import targets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture(scope="module")
def on_both(tmp_path_factory):
    """(values on TensorFlow, in this process; values on JAX, in a process of its own; whether that process
    loaded TensorFlow; the folder of the two backends' tiny models)."""
    folder = tmp_path_factory.mktemp("backends")
    given = backend_values.inputs()
    np.savez(folder / "inputs.npz", **given)
    backend_values.train_tiny(str(folder / "tf.keras"))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    script = (f"import sys, runpy; sys.argv = ['backend_values.py', {str(folder / 'inputs.npz')!r}, "
              f"{str(folder / 'jax.npz')!r}, {str(folder)!r}]; "
              f"runpy.run_path({os.path.join(HERE, 'backend_values.py')!r}, "
              "run_name='__main__'); import keras; assert keras.backend.backend() == 'jax'")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    return backend_values.values(given), dict(np.load(folder / "jax.npz")), done.stdout.strip(), folder


def test_jax_computes_them_and_trains_without_loading_tensorflow(on_both):
    # the values, jax.jit's augmentation and an unseeded fit with validation (Keras' seeding and saving use
    # TensorFlow where it is installed, so they come after)
    assert on_both[2] == "False"


def test_targets_are_identical(on_both):
    on_tf, on_jax = on_both[:2]
    for name in ["classes", "boundaries", *(f"pack_{t.name}" for t in targets.TABLE), "warped_labels"]:
        assert on_tf[name].dtype == on_jax[name].dtype, name
        np.testing.assert_array_equal(on_tf[name], on_jax[name], err_msg=name)
    # and they are what they should be: the padding tile weighs nothing, the frame-cut cell has no edge boundary
    packed = on_tf["pack_three_class"]
    assert (packed[2, ..., 1] == 0).all() and (packed[:2, ..., 1] > 0).all()
    assert on_tf["classes"][1, 0, 4, 0] == targets.INTERIOR and on_tf["classes"][1, 8, 4, 0] == targets.BOUNDARY


def test_losses_and_metrics_agree(on_both):
    on_tf, on_jax = on_both[:2]
    compared = [name for name in on_tf if name.startswith(("loss_", "metric_", "activate_"))]
    assert len(compared) == len(targets.TABLE) * (1 + 4 + 5)
    for name in compared:
        assert np.isfinite(on_tf[name]).all(), name
        np.testing.assert_allclose(on_jax[name], on_tf[name], rtol=2e-5, atol=1e-6, err_msg=name)
    # one value per sample, the same for each (the loss is the batch's)
    loss = on_tf["loss_three_class_bce_tversky"]
    assert loss.shape == (3,) and len(set(loss.tolist())) == 1


def test_the_geometry_of_augmentation_agrees(on_both):
    on_tf, on_jax = on_both[:2]
    for name in ("grid_rows", "grid_cols", "warped_image", "warped_maps"):
        np.testing.assert_allclose(on_jax[name], on_tf[name], rtol=1e-5, atol=1e-5, err_msg=name)
    # warped labels are still only labels of the input (nearest sampling)
    given = backend_values.inputs()
    assert set(np.unique(on_tf["warped_labels"])) <= set(np.unique(given["labels"]))


def test_augmentation_on_jax_is_augmentation(on_both):
    on_tf, on_jax = on_both[:2]
    given = backend_values.inputs()
    for values in (on_tf, on_jax):  # nothing switched on: the input back, exactly
        np.testing.assert_array_equal(values["augment_none_image"], given["image"])
        np.testing.assert_array_equal(values["augment_none_labels"], given["labels"])
    image, labels = on_jax["augment_default_image"], on_jax["augment_default_labels"]
    assert image.shape == given["image"].shape and labels.dtype == given["labels"].dtype
    assert not np.allclose(image, given["image"])  # it moved
    for sample in range(2):  # each sample's labels come from that sample's labels (padding stays -1)
        assert set(np.unique(labels[sample])) <= set(np.unique(given["labels"][sample]))
    assert (labels[2] == -1).all()
    # compiled by jax.jit, the same numbers as eagerly
    np.testing.assert_allclose(on_jax["jit_image"], image, atol=1e-5)
    np.testing.assert_array_equal(on_jax["jit_labels"], labels)


def test_a_model_trained_on_jax_gives_tensorflow_the_same_outputs_and_labels_and_back(on_both):
    import keras

    from cellseg import instances

    _, on_jax, _, folder = on_both
    images = backend_values.frames()[0]
    jax_trained = keras.models.load_model(folder / "jax.keras")  # trained on JAX, loaded by TensorFlow
    here = backend_values.outputs(jax_trained, images)
    np.testing.assert_allclose(here, on_jax["jax_trained"], atol=2e-5)
    settings = instances.Postprocess(target="three_class")
    labels = [instances.labels_from_outputs(o, settings) for o in here]
    assert all(frame.max() >= 1 for frame in labels)  # it found cells in two epochs
    for frame, there in zip(labels, on_jax["jax_trained"]):
        np.testing.assert_array_equal(instances.labels_from_outputs(there, settings), frame)
    # and a TensorFlow-trained model, loaded by JAX
    tf_trained = backend_values.outputs(keras.models.load_model(folder / "tf.keras"), images)
    np.testing.assert_allclose(on_jax["tf_trained"], tf_trained, atol=2e-5)


def test_the_gpu_benchmark_runs_on_the_cpu_with_jax_as_the_readme_shows(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu.py"), "--bases=4", "--size=32",
                           "--batch=2", "--steps=2", "--frame=48", f"--results_dir={tmp_path}"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.load(open(tmp_path / "gpu-cpu.json"))
    assert result["platform"] == "cpu" and result["precision"] == "float32" and not result["tensorflow_loaded"]
    keras_row = next(r for r in result["rows"] if r["model"].startswith("cellseg"))
    assert keras_row["base_filters"] == 4 and keras_row["images_per_s"] > 0 and keras_row["predict_ms"] > 0
    assert "| cellseg, Keras 3 on JAX, fit | 4 |" in (tmp_path / "gpu-cpu.md").read_text()


DATA_PARALLEL = """
import sys
import numpy as np
from cellseg import distribute, inputs, records
import keras
assert keras.backend.backend() == "jax"
strategy = distribute.make_strategy("mirrored", 2)  # splits the CPU before JAX starts
read = records.open_records(sys.argv[1])
tiles = records.validation_tile_count(read, 32)
dataset, steps = inputs.pipeline().validation_input(strategy, read, 32, 3, False, tiles)
batches = [dataset[index] for index in range(len(dataset))]
np.savez(sys.argv[2], images=np.concatenate([b[0] for b in batches]), labels=np.concatenate([b[1] for b in batches]),
         sizes=[len(b[0]) for b in batches], counts=[strategy.num_replicas_in_sync, steps, tiles])
print(strategy.description)
print("tensorflow" in sys.modules)
"""


def test_data_parallel_over_two_host_devices_gets_the_validation_tiles_in_full_global_batches(fluo_records, tmp_path):
    from cellseg import data, records as records_lib, target_ops

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "batches.npz"
    done = subprocess.run([sys.executable, "-c", DATA_PARALLEL, fluo_records, str(out)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-2:] == ["DataParallel over 2 cpu devices on JAX", "False"]
    got = np.load(out)
    replicas, steps, tiles = got["counts"]
    records = records_lib.open_records(fluo_records)
    assert replicas == 2 and tiles == records_lib.validation_tile_count(records, 32)
    # every step one global batch of 2 x 3 tiles, the real tiles first in the fixed order, then padding
    assert list(got["sizes"]) == [6] * steps == [6] * records_lib.validation_steps(tiles, 3, 1, 2)
    pipeline = data.validation_dataset(records, 32, 3, replicas=2, tile_count=tiles)
    expected = pipeline.unbatch().take(len(got["images"]))
    np.testing.assert_array_equal(got["images"], np.stack([image.numpy() for image, _, _ in expected]))
    padding = np.all(got["labels"] == target_ops.PADDING_LABEL, axis=(1, 2, 3))
    assert not padding[:tiles].any() and padding[tiles:].all()


@pytest.mark.parametrize("capability, policy", [(None, "mixed_bfloat16"), ((7, 5), "mixed_float16"),
                                                ((8, 0), "mixed_bfloat16"), ((9, 0), "mixed_bfloat16")])
def test_mixed_precision_is_bfloat16_where_the_devices_have_it(monkeypatch, capability, policy):
    from cellseg import backends, distribute

    assert backends.current().gpu_capability() is None  # the CPU that the tests run on
    monkeypatch.setattr(backends.current(), "gpu_capability", lambda: capability)
    assert distribute.mixed_policy() == policy
