"""Each porting pitfall documented in docs/ measured against the frameworks themselves.

These tests pin the *native* behaviour that makes a naive port diverge, next to the fix the
implementations use, so a framework release that changes a default shows up here first.
"""
import importlib.util
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from flax import nnx

import keras_impl.layers
import jax_impl.layers
import parity


def _batch(n=6, features=4, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, features)).astype(dtype) * 2 + 1


# --- batch norm -------------------------------------------------------------------------

def test_batch_norm_eps_defaults_differ():
    assert torch.nn.BatchNorm1d(4).eps == 1e-5
    assert keras.layers.BatchNormalization().epsilon == 1e-3
    assert nnx.BatchNorm(4, rngs=nnx.Rngs(0)).epsilon == 1e-5


def test_batch_norm_momentum_conventions_are_opposite():
    assert torch.nn.BatchNorm1d(4).momentum == 0.1  # weight of the *new* batch
    assert keras.layers.BatchNormalization().momentum == 0.99  # weight of the *old* running value
    assert nnx.BatchNorm(4, rngs=nnx.Rngs(0)).momentum == 0.99
    assert keras_impl.layers.BatchNorm(eps=1e-5, momentum=0.1, dtype="float32").momentum == pytest.approx(0.9)
    assert jax_impl.layers.BatchNorm(4, eps=1e-5, momentum=0.1, dtype=jnp.float32,
                                     rngs=nnx.Rngs(0)).momentum == pytest.approx(0.9)


def test_native_keras_and_flax_update_running_variance_with_the_biased_variance():
    x = _batch(dtype=np.float32)
    torch_bn = torch.nn.BatchNorm1d(4, momentum=0.1).train()
    torch_bn(torch.from_numpy(x))
    keras_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    keras_bn(x, training=True)
    flax_bn = nnx.BatchNorm(4, momentum=0.9, rngs=nnx.Rngs(0))
    flax_bn(jnp.asarray(x))
    unbiased = 0.9 + 0.1 * x.var(0, ddof=1)
    biased = 0.9 + 0.1 * x.var(0)
    np.testing.assert_allclose(torch_bn.running_var.numpy(), unbiased, rtol=1e-6)
    np.testing.assert_allclose(keras_bn.moving_variance.numpy(), biased, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(flax_bn.var[...]), biased, rtol=1e-6)
    ours = jax_impl.layers.BatchNorm(4, eps=1e-5, momentum=0.1, dtype=jnp.float32, rngs=nnx.Rngs(0))
    ours(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(ours.var[...]), unbiased, rtol=1e-6)
    assert int(ours.num_batches_tracked[...]) == 1


def test_flax_batch_stats_stay_float32_under_float64_params():
    with jax.enable_x64(True):
        native = nnx.BatchNorm(4, param_dtype=jnp.float64, dtype=jnp.float64, rngs=nnx.Rngs(0))
        ours = jax_impl.layers.BatchNorm(4, eps=1e-5, momentum=0.1, dtype=jnp.float64, rngs=nnx.Rngs(0))
        assert native.scale[...].dtype == jnp.float64
        assert native.mean[...].dtype == jnp.float32  # a float64 running mean would be rounded on load
        assert ours.mean[...].dtype == jnp.float64 and ours.var[...].dtype == jnp.float64


def test_flax_fast_variance_cancels_catastrophically_far_from_zero():
    x = (np.random.default_rng(0).standard_normal((64, 4)) + 3000.0).astype(np.float32)
    exact = x.astype(np.float64).var(0)
    fast = nnx.BatchNorm(4, momentum=0.0, rngs=nnx.Rngs(0))  # use_fast_variance=True by default
    careful = nnx.BatchNorm(4, momentum=0.0, use_fast_variance=False, rngs=nnx.Rngs(0))
    fast(jnp.asarray(x))
    careful(jnp.asarray(x))
    fast_error = np.abs(np.asarray(fast.var[...]) - exact).max() / exact.max()
    careful_error = np.abs(np.asarray(careful.var[...]) - exact).max() / exact.max()
    assert careful_error < 1e-5 < fast_error


def test_reading_a_keras_variable_can_alias_it():
    """keras.ops.convert_to_tensor(variable) on TensorFlow hands back the variable itself, so a
    value read "before" an assign is seen "after" it; keras.ops.copy takes a snapshot."""
    variable = keras.Variable(np.ones(2, np.float32))
    alias = keras.ops.convert_to_tensor(variable)
    snapshot = keras.ops.copy(variable)
    variable.assign(np.full(2, 5.0, np.float32))
    assert float(keras.ops.sum(alias * 1.0)) == 10.0
    assert float(keras.ops.sum(snapshot)) == 2.0


# --- activations ------------------------------------------------------------------------

def test_gelu_defaults_differ():
    x = np.linspace(-3, 3, 101).astype(np.float32)
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()  # torch: exact by default
    assert np.abs(np.asarray(jax.nn.gelu(x)) - exact).max() > 1e-4  # jax.nn.gelu: tanh by default
    np.testing.assert_allclose(np.asarray(jax.nn.gelu(x, approximate=False)), exact, atol=1e-6)
    np.testing.assert_allclose(keras.activations.gelu(x).numpy(), exact, atol=1e-6)  # keras: exact


def test_leaky_relu_default_slopes_differ():
    x = np.array([-1.0], np.float32)
    assert torch.nn.functional.leaky_relu(torch.from_numpy(x)).item() == pytest.approx(-0.01)
    assert float(jax.nn.leaky_relu(x)[0]) == pytest.approx(-0.01)
    assert float(keras.activations.leaky_relu(x)[0]) == pytest.approx(-0.2)
    assert float(keras.layers.LeakyReLU()(x)[0]) == pytest.approx(-0.3)


def test_tensorflow_gelu_and_leaky_relu_are_float32_accurate_in_float64():
    from keras_impl.activations import activation

    x = np.linspace(-4, 4, 2001)
    torch_gelu = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert np.abs(tf.nn.gelu(x, approximate=False).numpy() - torch_gelu).max() > 1e-10
    assert np.abs(np.asarray(activation("gelu")(x)) - torch_gelu).max() < 1e-14
    torch_leaky = torch.nn.functional.leaky_relu(torch.from_numpy(x), 0.01).numpy()
    assert np.abs(tf.nn.leaky_relu(x, alpha=0.01).numpy() - torch_leaky).max() > 1e-11  # alpha is a float32 attr
    assert np.abs(np.asarray(activation("leaky_relu", 0.01)(x)) - torch_leaky).max() == 0.0


# --- dtypes -----------------------------------------------------------------------------

def test_jax_silently_computes_float64_inputs_in_float32_without_x64():
    assert jnp.asarray(np.zeros(2, np.float64)).dtype == jnp.float32
    with jax.enable_x64(True):
        assert jnp.asarray(np.zeros(2, np.float64)).dtype == jnp.float64


def test_keras_layers_left_at_float32_cast_float64_inputs_down():
    x = np.zeros((1, 4, 4, 1), np.float64)
    assert keras.layers.MaxPooling2D(2)(x).dtype == "float32"
    assert keras.layers.MaxPooling2D(2, dtype="float64")(x).dtype == "float64"


def test_keras_losses_default_to_float32():
    logits = np.array([[0.3, 0.1]], np.float64)
    assert keras.losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([0]), logits).dtype == "float32"
    assert keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64")(
        np.array([0]), logits).dtype == "float64"


# --- convolutions -----------------------------------------------------------------------

def test_flax_conv_pads_same_by_default_torch_and_keras_do_not():
    x = np.zeros((1, 8, 8, 1), np.float32)
    assert nnx.Conv(1, 2, (5, 5), rngs=nnx.Rngs(0))(jnp.asarray(x)).shape == (1, 8, 8, 2)
    assert keras.layers.Conv2D(2, 5)(x).shape == (1, 4, 4, 2)
    assert torch.nn.Conv2d(1, 2, 5)(torch.zeros(1, 1, 8, 8)).shape == (1, 2, 4, 4)


def test_lenet5_28x28_padding_keeps_the_paper_feature_maps():
    spec = parity.spec("lenet5", "tiny")
    assert spec.image_size == 28 and spec.conv1_padding == 2
    inputs, _ = parity.example_batch(spec, 2)
    for framework in parity.FRAMEWORKS:
        _, trace = parity.forward(framework, parity.build(framework, spec), inputs, trace=True)
        assert trace["conv1"].shape == (2, 6, 28, 28) and trace["conv2"].shape == (2, 16, 10, 10), framework


def test_keras_backend_defaults_to_tensorflow():
    assert os.environ["KERAS_BACKEND"] == "tensorflow" and keras.backend.backend() == "tensorflow"


# --- bf16 embedding gradients -------------------------------------------------------------

def _embedding_grad_suite():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "test_embedding_grad.py"
    module_spec = importlib.util.spec_from_file_location("embedding_grad_suite", path)
    suite = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(suite)
    return suite


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_bf16_embedding_gradient_of_a_small_table_accumulates_in_bf16(framework):
    """T5's relative-position-bias table (32 buckets) takes 8192 updates per row from a 512-token
    sequence. As a lookup, its gradient is a scatter-add that sums them in bf16 (in all three
    frameworks, on the CPU): 19 % of the gradient's scale off. As a one-hot matmul it accumulates
    in float32: 0.3 %, the inputs' own bf16 rounding."""
    suite = _embedding_grad_suite()
    table, ids, upstream, expected = suite.lookup_inputs("t5_relative_bias")
    scale = np.abs(expected).max()
    errors = {method: np.abs(suite.GRADIENTS[framework](table, ids, upstream, "bf16", method, "cpu")()
                             - expected).max() / scale for method in suite.METHODS}
    assert errors["gather"] > 0.1 and errors["one_hot"] < 0.005, errors
