"""The Keras model cellseg trains: a U-Net whose training step augments on the device.

`Segmenter` is a `keras.Model` whose training step augments each batch on the
device (`cellseg.augment`) and derives the target from the augmented labels
there (`cellseg.targets`) before Keras' own step, with a stateless seed made of
the run's seed, the replica and the step, so a run is reproducible and replicas
see different deformations. `output_model` puts the target's activation on top
for prediction and export.

The steps' signatures, the seed's parts and the private Keras hooks differ per
backend: they are each backend's `Steps` (`cellseg.backends.tensorflow`,
`cellseg.backends.jax`), which the Segmenter takes from the backend Keras runs
on; what they share is here (`augmented`, `validation_pair`).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from cellseg import augment, backends, model, target_ops, targets, tiling


def unet_of(architecture: dict, target: str, size=None) -> keras.Model:
    """The U-Net of `architecture` (`model.Architecture`'s fields) for `target`, for `size` x `size` (or
    (height, width)) inputs (default: the training patch)."""
    shape = {key: value for key, value in architecture.items() if key != "patch_size"}
    return model.build_unet(size or architecture["patch_size"], outputs=targets.get(target).channels, **shape)


@keras.saving.register_keras_serializable(package="cellseg")
class Segmenter(backends.current().Steps, keras.Model):
    """A U-Net whose training step augments each replica's batch on its device.

    Batches are (image, labels, maps) (`cellseg.data`); after augmentation the
    target reaches the loss and the metrics as `target_ops.pack`'s channels. The
    network has one output channel per channel of its `target`.
    """

    def __init__(self, patch_size: int, base_filters: int = 16, depth: int = 4, dropout: float = 0.0,
                 transposed: bool = False, batch_norm_momentum: float = 0.9, augmentation: dict | None = None,
                 seed: int = 0, target: str = targets.DEFAULT, class_weights=(1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.target = targets.check(target)
        self.class_weights = tuple(float(w) for w in class_weights)
        self.architecture = dataclasses.asdict(model.Architecture(patch_size, base_filters, depth, dropout, transposed,
                                                                  batch_norm_momentum))
        self.unet = unet_of(self.architecture, self.target)
        self.augmentation = augment.Config(**(augmentation or {}))
        self.seed = seed

    def call(self, images, training=False):
        return self.unet(images, training=training)

    def augmented(self, batch, seed):
        """(images, y_true) of a training batch (image, labels, maps), augmented with stateless `seed` [2]."""
        images, labels, maps = batch
        images, labels, maps = augment.augment(images, labels, maps, seed, self.augmentation)
        return images, self.pack(labels, maps)

    def validation_pair(self, batch):
        """(images, y_true, real): a validation batch as the loss and metrics read it, and how many of its tiles
        are not padding (the validation pipelines pad the last batch with tiles that `pack` weighs 0)."""
        images, labels, maps = batch
        y_true = self.pack(labels, maps)
        real = ops.sum(ops.cast(ops.logical_not(target_ops.is_padding(labels)), "float32"))
        return images, y_true, real

    def symbolic_batch(self, images_shape, labels_shape):
        """(images, y_true) as KerasTensors of a batch of these shapes: what Keras builds the loss and metrics
        from (they read `pack`'s channels, not the labels)."""
        packed = tuple(labels_shape[:-1]) + (targets.get(self.target).packed_channels,)
        return keras.KerasTensor(tuple(images_shape), "float32"), keras.KerasTensor(packed, "float32")

    def pack(self, labels, maps):
        """`y_true` of the loss and metrics from (augmented) labels and maps."""
        return target_ops.pack(self.target, labels, maps, self.class_weights)

    # A step's seed is [seed x SEED_STRIDE + replica, step]: runs of other seeds draw apart from the first step.
    SEED_STRIDE = 1_000_003

    @classmethod
    def from_config(cls, config):
        # Checkpoints written before the argument took its flag's name.
        if "momentum" in config:
            config = {**config, "batch_norm_momentum": config.pop("momentum")}
        return cls(**config)

    def get_config(self):
        return {**super().get_config(), **self.architecture,
                "augmentation": dataclasses.asdict(self.augmentation), "seed": self.seed,
                "target": self.target, "class_weights": list(self.class_weights)}


def output_model(segmenter: Segmenter, size=None) -> keras.Model:
    """The U-Net with its target's activation on top (`target_ops.activate`), optionally for `size` x `size`
    (or (height, width)) inputs.

    Outputs: the cell probability (binary), the background / interior / boundary
    probabilities (three_class), or the cell and neighbour distances (distance).
    """
    unet = segmenter.unet
    shape = None if size is None else (size, size) if isinstance(size, int) else tuple(size)
    if shape is not None and shape != tuple(unet.input.shape[1:3]):
        unet = unet_of(segmenter.architecture, segmenter.target, shape)
        unet.set_weights(segmenter.unet.get_weights())
    outputs = keras.layers.Activation(targets.get(segmenter.target).activation, dtype="float32", name="outputs")(unet.output)
    return keras.Model(unet.input, outputs, name=f"cellseg_{segmenter.target}")


class Network:
    """`segmenter`'s outputs for tiles of any shape: tiles [n, h, w, 1] -> outputs [n, h, w, C].

    One Keras model per tile shape, built on its first use and kept (the last
    `SHAPES_KEPT`): a time-lapse of one frame size builds one model, traced once.
    """

    SHAPES_KEPT = 4

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self.models: dict[tuple[int, int], keras.Model] = {}

    def __call__(self, tiles):
        shape = tuple(tiles.shape[1:3])
        if shape not in self.models:
            if len(self.models) >= self.SHAPES_KEPT:
                self.models.pop(next(iter(self.models)))
            self.models[shape] = output_model(self.segmenter, shape)
        return self.models[shape].predict_on_batch(tiles)

    def refresh(self) -> None:
        """Take the segmenter's current weights into the models built so far (they hold copies)."""
        weights = self.segmenter.unet.get_weights()
        for built in self.models.values():
            built.set_weights(weights)

    def layout(self, height: int, width: int, max_pixels: int = tiling.MAX_TILE_PIXELS):
        """(tile, overlap) for a frame (`tiling.choose` with this network's stride and receptive field)."""
        depth = self.segmenter.architecture["depth"]
        return tiling.choose(height, width, 2**depth, model.receptive_radius(depth), max_pixels)
