import numpy as np

from cellseg import tiling


def dihedral(image):
    """The 8 images of a square image under the flips and quarter turns, computed from transposes and flips."""
    found = []
    for base in (image, image.T):
        found += [base, base[::-1], base[:, ::-1], base[::-1, ::-1]]
    return found


def test_test_time_augmentation_averages_the_outputs_over_the_eight_symmetries():
    rng = np.random.default_rng(0)
    tiles = rng.random((3, 16, 16, 1)).astype(np.float32)
    ramp = np.add.outer(np.arange(16.0), 3 * np.arange(16.0) ** 2).astype(np.float32)  # no symmetry at all
    calls = []

    def network(batch):  # equivariant part (x 2) plus a part fixed to the tile's frame (the ramp)
        calls.append(batch.shape)
        return 2 * batch + ramp[None, :, :, None]

    averaged = tiling.averaged_over_symmetries(network)(tiles)
    expected = 2 * tiles + np.mean(dihedral(ramp), axis=0)[None, :, :, None]
    np.testing.assert_allclose(averaged, expected, rtol=1e-5)
    assert calls == [(3, 16, 16, 1)] * 8
