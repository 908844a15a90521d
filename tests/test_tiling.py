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


def test_a_frame_that_fits_is_one_tile_padded_to_the_stride_and_a_large_one_gets_square_tiles():
    assert tiling.choose(100, 140, 16, 29, max_pixels=112 * 144) == ((112, 144), 0)
    assert tiling.choose(512, 512, 16, 137) == ((512, 512), 0)
    (tile_h, tile_w), overlap = tiling.choose(3000, 5000, 16, 137)
    assert tile_h == tile_w == 2048 and overlap == 2 * 144  # the radius rounded up to the stride, twice
    # A budget below what the overlap needs still leaves a tile that keeps something.
    assert tiling.choose(3000, 5000, 16, 137, max_pixels=100 * 100) == ((304, 304), 288)
    # Tiles per network call under the budget: four 1024 x 1024 frames, one 2048 tile, never none.
    assert [tiling.tiles_per_call(t) for t in (1024, (512, 2048), 2048, 4096)] == [4, 4, 1, 1]


def test_frames_of_one_shape_are_predicted_together_and_each_as_alone():
    rng = np.random.default_rng(1)
    images = [rng.random((40, 56)).astype(np.float32) for _ in range(3)]
    calls = []

    def network(tiles):  # not translation invariant: a seam or a misplaced tile would show
        calls.append(tiles.shape)
        rows = np.arange(tiles.shape[1])[None, :, None, None]
        return tiles * 2 + 0.01 * rows

    together = tiling.predict_frames(network, images, (48, 64), 0, batch_size=3)
    assert calls == [(3, 48, 64, 1)]
    for image, result in zip(images, together):
        alone = tiling.predict_outputs(network, image, (48, 64), 0)
        np.testing.assert_array_equal(result, alone)
        np.testing.assert_allclose(result[..., 0], image * 2 + 0.01 * np.arange(40)[:, None], rtol=1e-6)
