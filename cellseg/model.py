"""The U-Net (Ronneberger et al., 2015), built from the paper's blocks.

`double_conv` (two 3x3 convolutions with batch norm and ReLU), `downscale`
(2x2 max pooling, then double_conv), `upscale` (upsampling, concatenation with
the contracting path's feature map, double_conv). The network outputs one
channel of logits per class of the target, in float32 even under mixed precision.

Spatial shapes are static (the patch or tile size): Keras 3's bilinear
UpSampling2D fails on unknown heights and widths, and fixed shapes never retrace.
The weights do not depend on the size, so a model trained on patches is rebuilt
at any tile size to predict (`build_unet(...)` + `set_weights`).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers


def double_conv(x, filters: int, dropout: float, batch_norm_momentum: float, name: str):
    """(3x3 conv -> batch norm -> ReLU -> dropout) twice."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                          name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(momentum=batch_norm_momentum, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout{i}")(x)
    return x


def downscale(x, filters: int, dropout: float, batch_norm_momentum: float, name: str):
    """2x2 max pooling, then double_conv with `filters` channels."""
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return double_conv(x, filters, dropout, batch_norm_momentum, name)


def upscale(x, skip, filters: int, dropout: float, batch_norm_momentum: float, transposed: bool, name: str):
    """Upsample by 2 (bilinear, or a learnt transposed conv), concatenate `skip`, double_conv."""
    if transposed:
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"{name}_up")(x)
    else:
        # In float32 even under mixed precision: TensorFlow's bilinear resize computes
        # in float32, and XLA refuses its float32 gradient beside float16 neighbours.
        x = layers.UpSampling2D(2, interpolation="bilinear", dtype="float32", name=f"{name}_up")(x)
    x = layers.Concatenate(name=f"{name}_concat")([skip, x])
    return double_conv(x, filters, dropout, batch_norm_momentum, name)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The network's shape: what a run folder's checkpoint must match to be resumed or loaded."""

    patch_size: int = 256  # square training patch side; prediction rebuilds the network at its tile size
    base_filters: int = 16
    depth: int = 4
    dropout: float = 0.0
    transposed: bool = False
    batch_norm_momentum: float = 0.9

    def __post_init__(self):
        if self.patch_size < 2**self.depth or self.patch_size % 2**self.depth:
            raise ValueError(f"--patch_size={self.patch_size} must be a multiple of 2**depth = {2**self.depth}")


def build_unet(
    size: int | tuple[int, int],
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.0,
    transposed: bool = False,
    batch_norm_momentum: float = 0.9,
    channels: int = 1,
    outputs: int = 1,
    name: str = "unet",
) -> keras.Model:
    """A U-Net for `size` x `size` (or `size` = (height, width)) inputs of `channels` channels, giving
    `outputs` logit maps.

    `depth` downscale blocks, channels doubling from `base_filters` (the paper:
    64 and 4). Sides must be multiples of 2**depth. Batch-norm momentum 0.9
    lets the moving statistics settle within a few hundred steps.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if height % 2**depth or width % 2**depth:
        raise ValueError(f"size {size} must be a multiple of 2**depth = {2**depth}")
    inputs = keras.Input((height, width, channels), name="image")
    x = double_conv(inputs, base_filters, dropout, batch_norm_momentum, "input")
    skips = [x]
    for level in range(1, depth + 1):
        x = downscale(x, base_filters * 2**level, dropout, batch_norm_momentum, f"down{level}")
        skips.append(x)
    for level in range(depth - 1, -1, -1):
        x = upscale(x, skips[level], base_filters * 2**level, dropout, batch_norm_momentum, transposed,
                    f"up{level + 1}")
    logits = layers.Conv2D(outputs, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def receptive_radius(depth: int) -> int:
    """How far (pixels) an output pixel of `build_unet` sees, an upper bound: 3x3 convolutions, two per
    block, reach 2 * 2**level at their level (depth + 1 blocks down, depth up); 2x2 pooling into level
    l + 1 and bilinear upsampling from it reach 2**l and 2**(l + 1) more."""
    convolutions = sum(2 * 2**level for level in range(depth + 1)) + sum(2 * 2**level for level in range(depth))
    resampling = sum(2**level + 2 ** (level + 1) for level in range(depth))
    return convolutions + resampling
