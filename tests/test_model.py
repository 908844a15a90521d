import keras
import numpy as np
import pytest

from cellseg import model


def expected_parameters(base, depth, channels=1, outputs=1):
    """Parameters of the U-Net counted by hand: convs without bias, 4 per batch-norm channel."""
    def double_conv(cin, cout):
        return 9 * cin * cout + 4 * cout + 9 * cout * cout + 4 * cout

    total = double_conv(channels, base)
    for level in range(1, depth + 1):
        total += double_conv(base * 2 ** (level - 1), base * 2**level)
    for level in range(depth - 1, -1, -1):
        total += double_conv(base * 2**level + base * 2 ** (level + 1), base * 2**level)
    return total + base * outputs + outputs  # the 1x1 logits conv has a bias


@pytest.mark.one_backend  # layer shapes: Keras' arithmetic, the same on every backend
@pytest.mark.parametrize("base, depth", [(4, 2), (16, 4), (64, 4)])
def test_parameter_count_matches_the_paper_blocks(base, depth):
    unet = model.build_unet(2**depth * 4, base, depth)
    assert unet.count_params() == expected_parameters(base, depth)


def test_paper_sized_network_has_about_31_million_parameters():
    assert 30e6 < expected_parameters(64, 4) < 32e6


def test_logits_have_the_input_size_in_float32():
    unet = model.build_unet(32, 4, 2)
    out = unet(np.zeros((2, 32, 32, 1), np.float32))
    assert out.shape == (2, 32, 32, 1) and out.dtype == "float32"
    transposed = model.build_unet(32, 4, 2, transposed=True)
    assert transposed(np.zeros((1, 32, 32, 1), np.float32)).shape == (1, 32, 32, 1)


def test_size_must_divide_by_two_to_the_depth():
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth = 16"):
        model.build_unet(40, 4, 4)


def test_weights_move_to_another_size_and_batch_norm_settles_fast():
    small, large = model.build_unet(32, 4, 2), model.build_unet(64, 4, 2)
    large.set_weights(small.get_weights())
    for a, b in zip(small.get_weights(), large.get_weights()):
        np.testing.assert_array_equal(a, b)
    norms = [layer for layer in small.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == 0.9 for layer in norms)
