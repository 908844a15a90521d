"""The on-device values of fixed inputs, and a tiny training, on whichever Keras backend is active.

tests/test_backends.py computes them in its own process (TensorFlow) and runs
this file as a script under `KERAS_BACKEND=jax`: `python backend_values.py
INPUTS.npz OUTPUTS.npz FOLDER`, which also trains a tiny Segmenter into
FOLDER/jax.keras with its outputs on the inputs' frames, and writes the outputs
of FOLDER/tf.keras (saved by TensorFlow). It imports nothing that needs
TensorFlow.
"""

from __future__ import annotations

import sys

import numpy as np


def inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Labels with touching cells and a padding tile, border maps, distance maps and logits for each target."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((3, 24, 24, 1), np.int32)
    labels[0, 3:11, 4:12] = 1
    labels[0, 11:19, 4:12] = 2  # touches cell 1
    labels[0, 2:6, 18:23] = 3
    labels[1, 0:9, 0:9] = 4  # cut by the frame's edge
    labels[1, 14:22, 10:20] = 5
    labels[2] = -1  # a padding tile (`target_ops.PADDING_LABEL`)
    maps = rng.random((3, 24, 24, 3)).astype(np.float32)
    return {"labels": labels, "maps": maps, "image": rng.random((3, 24, 24, 1)).astype(np.float32),
            "displacement": rng.normal(0, 2, (3, 24, 24, 2)).astype(np.float32),
            **{f"logits_{channels}": rng.normal(0, 2, (3, 24, 24, channels)).astype(np.float32)
               for channels in (1, 2, 3)}}


def values(given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every value the training step computes from `given` (`inputs`), as numpy, keyed by what it is."""
    from keras import ops

    from cellseg import augment, losses, metrics, target_ops, targets

    out = {"classes": target_ops.classes(given["labels"]),
           "boundaries": target_ops.inner_boundaries(given["labels"])}
    # augmentation's geometry from explicit parameters: a flip, a transposed flip and a quarter turn, warped,
    # rotated and zoomed; reflection at the borders
    rows, cols = augment.compose_grid(3, 24, 24, symmetry=ops.convert_to_tensor([1, 6, 3], "int32"),
                                      displacement=given["displacement"],
                                      angle=ops.convert_to_tensor([0.1, -0.2, 0.05]),
                                      scale=ops.convert_to_tensor([1.1, 0.9, 1.0]))
    out["grid_rows"], out["grid_cols"] = rows, cols
    out["warped_image"] = augment.sample(given["image"], rows, cols, "bilinear")
    out["warped_maps"] = augment.sample(given["maps"], rows, cols, "bilinear")
    out["warped_labels"] = augment.sample(given["labels"], rows, cols, "nearest")
    seed = ops.convert_to_tensor([4, 2], "int32")
    for name, config in (("none", augment.NONE), ("default", augment.Config())):
        image, labels, maps = augment.augment(given["image"], given["labels"], given["maps"], seed, config)
        out[f"augment_{name}_image"], out[f"augment_{name}_labels"], out[f"augment_{name}_maps"] = image, labels, maps
    for target in targets.TABLE:
        logits = given[f"logits_{target.channels}"]
        weights = (0.9, 4.0, 12.0) if len(target.class_names) > 2 else (0.9, 4.0)
        y_true = target_ops.pack(target.name, given["labels"], given["maps"], weights)
        out[f"pack_{target.name}"] = y_true
        out[f"activate_{target.name}"] = target_ops.activate(target.name, logits)
        for kind in losses.KINDS:
            loss = losses.SegmentationLoss(kind, alpha=0.3, beta=0.7, target=target.name)
            out[f"loss_{target.name}_{kind}"] = loss.call(y_true, logits)
        for kind in metrics.KINDS:
            metric = metrics.PixelMetric(kind, target=target.name)
            metric.update_state(y_true, logits)
            metric.update_state(y_true[:1], logits[:1])  # accumulated over two batches
            out[f"metric_{target.name}_{kind}"] = metric.result()
    return {key: np.asarray(ops.convert_to_numpy(value)) for key, value in out.items()}


def jitted(given: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The default augmentation of `values`, compiled by jax.jit (run under the JAX backend)."""
    import jax

    from cellseg import augment

    step = jax.jit(lambda image, labels, maps, seed: augment.augment(image, labels, maps, seed, augment.Config()))
    image, labels, maps = step(given["image"], given["labels"], given["maps"], np.array([4, 2], np.int32))
    return {"jit_image": np.asarray(image), "jit_labels": np.asarray(labels), "jit_maps": np.asarray(maps)}


def frames(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(images [8, 32, 32, 1] float32, labels [8, 32, 32, 1] int32): two bright cells a frame, one touching the
    edge, on noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((8, 32, 32, 1), np.int32)
    for i in range(8):
        labels[i, 4 + i:14 + i, 3:13] = 1
        labels[i, 20:30, 16 + i // 2:26 + i // 2] = 2
    images = (labels > 0).astype(np.float32) * 0.6 + rng.normal(0.2, 0.05, labels.shape).astype(np.float32)
    return images, labels


def train_tiny(path: str | None, seed: int | None = 0, epochs: int = 2):
    """A tiny three-class Segmenter trained for `epochs` on `frames`, saved to `path` (unless None); returns it.

    A `seed` seeds Keras (`keras.utils.set_random_seed`, which seeds TensorFlow too where it is installed, and so
    loads it); None leaves the initial weights random.
    """
    import keras

    from cellseg import losses, metrics, segmenter

    images, labels = frames()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    net = segmenter.Segmenter(32, base_filters=4, depth=2, target="three_class", class_weights=(1.0, 2.0, 4.0))
    net.compile(optimizer=keras.optimizers.Adam(1e-2), loss=losses.Config().for_target("three_class"),
                metrics=metrics.pixel_metrics("three_class"))
    net.fit(images, labels, sample_weight=np.zeros_like(images), batch_size=4, epochs=epochs, verbose=0,
            validation_data=(images[:3], labels[:3], np.zeros_like(images[:3])))
    if path:
        net.save(path)
    return net


def outputs(net, images: np.ndarray) -> np.ndarray:
    """The network's outputs (its target's activation on top) for `images`."""
    from cellseg import segmenter

    return np.asarray(segmenter.output_model(net).predict_on_batch(images))


if __name__ == "__main__":
    import os

    import keras

    given = dict(np.load(sys.argv[1]))
    folder = sys.argv[3]
    computed = values(given), jitted(given)
    train_tiny(None, seed=None, epochs=1)
    print("tensorflow" in sys.modules)  # the on-device code, jax.jit and fit, evaluation included
    trained = train_tiny(os.path.join(folder, "jax.keras"))
    np.savez(sys.argv[2], **computed[0], **computed[1], jax_trained=outputs(trained, frames()[0]),
             tf_trained=outputs(keras.models.load_model(os.path.join(folder, "tf.keras")), frames()[0]))
