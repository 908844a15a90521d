"""Shared fixtures: tiny seeded synthetic datasets, TensorFlow kept quiet and on the CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the napari plugin's widget, without a display

import pytest  # noqa: E402

# TensorFlow loaded without its C++ start-up lines, which pytest-xdist's controller would print after the summary.
from cellseg.cli import quiet  # noqa: E402, F401
import tensorflow as tf  # noqa: E402

from cellseg import synthetic  # noqa: E402

# Two logical CPU devices, so that MirroredStrategy runs with two replicas without
# a GPU. This must happen before TensorFlow initialises its devices.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture(scope="session")
def fluo_dataset(tmp_path_factory):
    """A 2-sequence, 4-frame, 96 x 96 fluorescence dataset (gold on frames 0 and 3)."""
    root = tmp_path_factory.mktemp("data") / "Fluo-N2DH-SYNTH"
    synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=2, frames=4, height=96, width=96, seed=3))
    return root


@pytest.fixture(scope="session")
def fluo_records(fluo_dataset, tmp_path_factory):
    """fluo_dataset converted to gzip shards (uncompressed is the default, covered elsewhere),
    with distance maps, sequence 02 held out for validation."""
    from beam_pipelines import ctc_to_tfrecord as convert

    out = str(tmp_path_factory.mktemp("records") / "Fluo-N2DH-SYNTH")
    convert.run([str(fluo_dataset)], convert.Output(out, compression="gzip"), convert.Settings(val_sequences=("02",), distance_maps=True))
    return out


@pytest.fixture(scope="session")
def one_frame_records(tmp_path_factory):
    """Two 1-frame 96 x 96 sequences converted, sequence 02 (one frame) for validation:
    1 tile of 96 px, 4 of 48 px, 9 of 32 px, so the validation edges come from the patch size."""
    from beam_pipelines import ctc_to_tfrecord as convert

    root = tmp_path_factory.mktemp("data") / "Fluo-N2DH-ONE"
    synthetic.write_dataset(root, synthetic.Config(kind="fluo", sequences=2, frames=1, height=96, width=96, seed=5))
    out = str(tmp_path_factory.mktemp("records") / "Fluo-N2DH-ONE")
    convert.run([str(root)], convert.Output(out), convert.Settings(val_sequences=("02",)))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """An untrained binary cellseg model saved as a .keras file: enough to exercise every prediction path."""
    import numpy as np

    from cellseg import segmenter

    import keras

    path = tmp_path_factory.mktemp("model") / "best.keras"
    # Seeded, so that its random outputs are the same in every pytest-xdist worker, whatever ran before.
    keras.utils.set_random_seed(0)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="binary")
    net.compile(optimizer="adam")
    net(np.zeros((1, 32, 32, 1), np.float32))
    net.save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_run(fluo_records, tmp_path_factory):
    """A tiny run folder trained briefly on fluo_records, its post-processing tuned: enough to find cells."""
    from cellseg import training

    folder = tmp_path_factory.mktemp("run")
    config = training.Config.from_flat(records_dir=fluo_records, model_dir=str(folder), patch_size=32, base_filters=4,
                                       depth=2, epochs=2, steps_per_epoch=4, per_replica_batch_size=4,
                                       learning_rate=1e-2, validation_images=0)
    training.train(config, log=lambda *_: None)
    return str(folder)
