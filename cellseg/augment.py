"""On-device augmentation in `keras.ops`: one sampling grid per sample, applied to all.

Called once per batch inside the training step, on the replica's device, with a
stateless seed (so a step is reproducible and replicas differ). Every op is
jit-compilable, on TensorFlow (the default backend) and on JAX; the random draws
and the batched gather are each backend's own (`cellseg.backends`). Each sample
gets one grid composed of

- a symmetry of the square (the 8 flips and quarter turns, the dihedral group),
- an elastic deformation as in the U-Net paper: random displacements on a coarse
  grid (3 x 3 by default, standard deviation `elastic_sigma` pixels), smoothly
  interpolated to every pixel with a cubic (Catmull-Rom) spline,
- an optional small rotation and scaling about the centre,

sampled with reflection at the borders: bilinear for image and weights, nearest
for labels, so labels stay labels. Intensity jitter (gamma, contrast,
brightness, noise) then touches the image alone. All magnitudes zero and
`symmetries=False` give the input back exactly.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from keras import ops

from cellseg import backends


@dataclasses.dataclass(frozen=True)
class Config:
    """Augmentation magnitudes; zero switches a part off."""

    symmetries: bool = True  # random flip / quarter turn (all 8 of the dihedral group)
    elastic_sigma: float = 10.0  # std of the coarse displacements, pixels
    elastic_points: int = 3  # coarse grid is points x points
    rotation: float = 10.0  # max small rotation, degrees (uniform in +-)
    scale: float = 0.1  # max relative zoom (uniform in 1 +- scale)
    # Mild: stronger changes (0.7 / 0.5 / 0.1) found the dim nuclei of one real test sequence in one
    # training, but lost SEG over seeds on it and on phase contrast (docs/QUALITY.md).
    gamma: float = 0.2  # log-gamma uniform in +-gamma
    contrast: float = 0.1  # contrast factor uniform in 1 +- contrast
    brightness: float = 0.05  # offset uniform in +-brightness (image in [0, 1])
    noise: float = 0.02  # std of additive Gaussian noise

    def __post_init__(self):
        for name in ("elastic_sigma", "rotation", "scale", "gamma", "contrast", "brightness", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation magnitude {name} must be >= 0, got {getattr(self, name)}")
        if self.elastic_points < 2:
            raise ValueError(f"elastic_points must be at least 2, got {self.elastic_points}")
        if self.scale >= 1:
            raise ValueError(f"scale must be below 1, got {self.scale}")


NONE = Config(symmetries=False, elastic_sigma=0.0, rotation=0.0, scale=0.0, gamma=0.0, contrast=0.0, brightness=0.0,
              noise=0.0)

# One sub-seed per random draw (from one split), so that switching a part on or
# off does not change what the others draw. (TensorFlow's stateless_fold_in would
# do as well, but XLA on the CPU compiles the draws it seeds about 4 times slower.)
_SYMMETRY, _ELASTIC, _ROTATION, _SCALE, _GAMMA, _CONTRAST, _BRIGHTNESS, _NOISE = range(8)


def augment(image, labels, weights, seed, config: Config = Config()):
    """Augment a batch: `image`, `weights` float [B, H, W, C]; `labels` integer or float [B, H, W, C].

    `seed` is a stateless seed, shape [2] integer. Returns the three tensors with
    their shapes and dtypes unchanged.
    """
    batch, height, width = _static_shape(image)
    seeds = split_seed(seed)
    rows, cols = sampling_grid(seeds, batch, height, width, config)
    if rows is not None:
        sampler = _Sampler(rows, cols, height, width)
        image, weights, labels = sampler(image, "bilinear"), sampler(weights, "bilinear"), sampler(labels, "nearest")
    image = jitter_intensity(image, seeds, config)
    return image, labels, weights


def split_seed(seed):
    """Eight independent stateless seeds [8, 2] from one seed [2]."""
    return backends.current().split_seed(seed, 8)


def sampling_grid(seeds, batch: int, height: int, width: int, config: Config):
    """Per-sample input coordinates (rows, cols), each [B, H, W] float32; (None, None) for the identity.

    `seeds` comes from `split_seed`.
    """
    room = backends.current()
    symmetry = None
    if config.symmetries:
        count = 8 if height == width else 4  # quarter turns need a square
        symmetry = room.uniform([batch], seeds[_SYMMETRY], 0, count, "int32")
    displacement = None
    if config.elastic_sigma > 0:
        displacement = elastic_displacements(seeds[_ELASTIC], batch, height, width,
                                             config.elastic_sigma, config.elastic_points)
    angle = scale = None
    if config.rotation > 0:
        limit = math.radians(config.rotation)
        angle = room.uniform([batch], seeds[_ROTATION], -limit, limit)
    if config.scale > 0:
        scale = room.uniform([batch], seeds[_SCALE], 1 - config.scale, 1 + config.scale)
    if symmetry is None and displacement is None and angle is None and scale is None:
        return None, None
    return compose_grid(batch, height, width, symmetry, displacement, angle, scale)


def compose_grid(batch, height, width, symmetry=None, displacement=None, angle=None, scale=None):
    """Input coordinates for each output pixel from explicit parameters.

    `symmetry` [B] int in 0..7 (bit 0: flip rows, bit 1: flip columns, bit 2:
    transpose); `displacement` [B, H, W, 2] pixels; `angle` [B] radians; `scale`
    [B]. Any of them may be None. Coordinates are relative to the centre, so
    flips and quarter turns land exactly on pixel centres.
    """
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    ys, xs = ops.meshgrid(ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"), indexing="ij")
    u = ops.broadcast_to(ys - cy, [batch, height, width])
    v = ops.broadcast_to(xs - cx, [batch, height, width])
    if displacement is not None:
        u, v = u + displacement[..., 0], v + displacement[..., 1]
    if angle is not None or scale is not None:
        angle = ops.zeros([batch]) if angle is None else angle
        zoom = ops.ones([batch]) if scale is None else scale
        cos, sin = _per_sample(ops.cos(angle) / zoom), _per_sample(ops.sin(angle) / zoom)
        u, v = cos * u - sin * v, sin * u + cos * v
    if symmetry is not None:
        flip_rows = _per_sample(ops.bitwise_and(symmetry, 1) > 0)
        flip_cols = _per_sample(ops.bitwise_and(symmetry, 2) > 0)
        transpose = _per_sample(ops.bitwise_and(symmetry, 4) > 0)
        u, v = ops.where(transpose, v, u), ops.where(transpose, u, v)
        u, v = ops.where(flip_rows, -u, u), ops.where(flip_cols, -v, v)
    return u + cy, v + cx


def elastic_displacements(seed, batch: int, height: int, width: int, sigma: float, points: int = 3):
    """Smooth random displacements [B, H, W, 2] (rows, cols), in pixels.

    Displacements drawn from N(0, sigma^2) on a `points` x `points` grid spanning
    the patch corner to corner are interpolated to every pixel with a
    Catmull-Rom spline, which passes through the drawn values.
    """
    coarse = sigma * backends.current().normal([batch, points, points, 2], seed)
    along_rows = ops.convert_to_tensor(_catmull_rom_matrix(height, points))  # [H, points]
    along_cols = ops.convert_to_tensor(_catmull_rom_matrix(width, points))  # [W, points]
    return ops.einsum("hp,bpqc,wq->bhwc", along_rows, coarse, along_cols)


def _catmull_rom_matrix(size: int, points: int) -> np.ndarray:
    """Weights [size, points] that interpolate `points` evenly spaced values to `size` pixels."""
    position = np.linspace(0.0, points - 1.0, size)
    weights = np.zeros((size, points), np.float32)
    for row, p in enumerate(position):
        i = min(int(np.floor(p)), points - 2)
        t = p - i
        # Catmull-Rom basis on knots i-1..i+2. A knot beyond an end is extrapolated
        # linearly from the last two (2 p[0] - p[1]), so straight lines stay straight.
        basis = (
            0.5 * (-t**3 + 2 * t**2 - t),
            0.5 * (3 * t**3 - 5 * t**2 + 2),
            0.5 * (-3 * t**3 + 4 * t**2 + t),
            0.5 * (t**3 - t**2),
        )
        for offset, value in zip((-1, 0, 1, 2), basis):
            knot = i + offset
            if knot < 0:
                weights[row, 0] += 2 * value
                weights[row, 1] -= value
            elif knot > points - 1:
                weights[row, points - 1] += 2 * value
                weights[row, points - 2] -= value
            else:
                weights[row, knot] += value
    return weights


def sample(values, rows, cols, method: str):
    """`values` [B, H, W, C] read at (rows, cols) [B, H', W'], reflecting outside the frame.

    `method` is "bilinear" or "nearest" (half-way points round up).
    """
    return _Sampler(rows, cols, *_static_shape(values)[1:])(values, method)


class _Sampler:
    """Flat indices and offsets of one sampling grid, computed once for all the tensors it warps."""

    def __init__(self, rows, cols, height: int, width: int):
        rows, cols = _reflect(rows, height), _reflect(cols, width)
        top, left = ops.floor(rows), ops.floor(cols)
        self.dy, self.dx = (rows - top)[..., None], (cols - left)[..., None]
        top, left = ops.cast(top, "int32"), ops.cast(left, "int32")
        bottom, right = ops.minimum(top + 1, height - 1), ops.minimum(left + 1, width - 1)
        self.corners = [r * width + c for r in (top, bottom) for c in (left, right)]
        # Reflected coordinates lie in [0, size - 1], so rounding stays inside.
        self.nearest = ops.cast(ops.floor(rows + 0.5), "int32") * width + ops.cast(ops.floor(cols + 0.5), "int32")

    def __call__(self, values, method: str):
        batch, height, width = _static_shape(values)
        gather = backends.current().batch_gather
        flat = ops.reshape(values, [batch, height * width, values.shape[-1]])
        if method == "nearest":
            return gather(flat, self.nearest)
        flat = ops.cast(flat, "float32")
        top_left, top_right, bottom_left, bottom_right = (gather(flat, i) for i in self.corners)
        upper = top_left + self.dx * (top_right - top_left)
        lower = bottom_left + self.dx * (bottom_right - bottom_left)
        return ops.cast(upper + self.dy * (lower - upper), values.dtype)


def _reflect(coordinate, size: int):
    """Mirror coordinates into [0, size - 1] about the edge pixels (numpy's 'reflect' padding)."""
    if size == 1:
        return ops.zeros_like(coordinate)
    period = 2.0 * (size - 1)
    folded = ops.mod(coordinate, period)
    return ops.where(folded > size - 1, period - folded, folded)


def jitter_intensity(image, seeds, config: Config):
    """Per-sample gamma, contrast, brightness and noise on an image in [0, 1]; `seeds` from `split_seed`."""
    batch = _static_shape(image)[0]
    room = backends.current()
    if config.gamma > 0:
        log_gamma = room.uniform([batch], seeds[_GAMMA], -config.gamma, config.gamma)
        image = ops.power(ops.maximum(image, 0.0), _per_sample(ops.exp(log_gamma))[..., None])
    if config.contrast > 0:
        factor = room.uniform([batch], seeds[_CONTRAST], 1 - config.contrast, 1 + config.contrast)
        mean = ops.mean(image, axis=[1, 2, 3], keepdims=True)
        image = (image - mean) * _per_sample(factor)[..., None] + mean
    if config.brightness > 0:
        offset = room.uniform([batch], seeds[_BRIGHTNESS], -config.brightness, config.brightness)
        image = image + _per_sample(offset)[..., None]
    if config.noise > 0:
        image = image + config.noise * room.normal_like(image, seeds[_NOISE])
    return image


def _per_sample(value):
    """[B] -> [B, 1, 1] for broadcasting over rows and columns."""
    return value[:, None, None]


def _static_shape(tensor):
    """(batch, height, width): height and width must be static, the batch may be a tensor."""
    shape = tuple(tensor.shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(f"augment needs [batch, height, width, channels] with static height, width "
                         f"and channels, got {shape}")
    batch = shape[0] if shape[0] is not None else ops.shape(tensor)[0]
    return batch, shape[1], shape[2]
