"""Every row of the layout table round-trips, and each conversion computes the same function."""
import numpy as np
import pytest

from parity import layouts

CHW = (3, 4, 5)
SHAPES = {"linear": (7, 11), "flatten_linear": (7, 60), "conv2d": (6, 3, 5, 4), "depthwise_conv2d": (6, 1, 3, 3),
          "vector": (9,), "counter": (), "embedding": (13, 7), "conv1d": (11, 7)}


@pytest.mark.parametrize("kind", sorted(layouts.LAYOUTS))
@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_round_trip_is_bit_exact(kind, framework):
    rng = np.random.default_rng(0)
    canonical = rng.standard_normal(SHAPES[kind]).astype(np.float32)
    meta = {"chw": CHW}
    native = layouts.to_native(framework, kind, canonical, meta)
    back = layouts.from_native(framework, kind, native, meta)
    assert back.shape == canonical.shape and back.dtype == canonical.dtype
    assert np.array_equal(back, canonical)
    assert native.flags.c_contiguous


def test_linear_kernel_computes_the_same_function():
    rng = np.random.default_rng(1)
    weight, x = rng.standard_normal((7, 11)), rng.standard_normal((2, 11))
    np.testing.assert_allclose(x @ layouts.to_native("keras", "linear", weight), x @ weight.T, rtol=1e-12)


def test_flatten_linear_matches_a_chw_flatten_fed_by_an_hwc_flatten():
    """The flatten-order pitfall: the same feature map flattened CHW (torch) and HWC (Keras/Flax)
    gives the same Linear output only with the permuted kernel; a plain transpose gets it wrong."""
    rng = np.random.default_rng(2)
    c, h, w = CHW
    feature_map = rng.standard_normal((2, c, h, w))
    weight = rng.standard_normal((7, c * h * w))
    torch_out = feature_map.reshape(2, -1) @ weight.T
    hwc = feature_map.transpose(0, 2, 3, 1).reshape(2, -1)
    kernel = layouts.to_native("jax", "flatten_linear", weight, {"chw": CHW})
    np.testing.assert_allclose(hwc @ kernel, torch_out, rtol=1e-12)
    naive = layouts.to_native("jax", "linear", weight)
    assert np.abs(hwc @ naive - torch_out).max() > 1.0


def test_conv2d_kernel_computes_the_same_cross_correlation():
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((4, 3, 2, 2))  # OIHW
    patch = rng.standard_normal((3, 2, 2))  # CHW
    torch_out = np.einsum("oihw,ihw->o", weight, patch)
    kernel = layouts.to_native("keras", "conv2d", weight)  # HWIO
    np.testing.assert_allclose(np.einsum("hwio,hwi->o", kernel, patch.transpose(1, 2, 0)), torch_out, rtol=1e-12)


def test_activations_move_channels_only_where_channels_last():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert layouts.activation_to_native("torch", x, "image") is x
    assert layouts.activation_to_native("keras", x, "image").shape == (2, 4, 5, 3)
    assert np.array_equal(layouts.activation_from_native("jax", layouts.activation_to_native("jax", x, "image"),
                                                         "image"), x)
    features = np.zeros((2, 3))
    assert layouts.activation_to_native("jax", features, "features") is features
    sequence = np.zeros((2, 5, 3))  # (B, T, F): batch-first sequences have no channel axis to move
    assert layouts.activation_to_native("keras", sequence, "sequence") is sequence
    assert layouts.input_permutation("jax", 3, "sequence") is None


@pytest.mark.parametrize("framework", ["keras", "jax"])
def test_recurrent_cells_take_torch_nn_flat_names(framework):
    assert layouts.canonical_name(framework, ("l1_reverse", "weight_hh")) == "weight_hh_l1_reverse"
    assert layouts.canonical_name(framework, ("encoder", "l0", "bias_ih")) == "encoder.bias_ih_l0"
    assert layouts.canonical_name(framework, ("l0", "kernel")) == "l0.weight"  # not a recurrent leaf
