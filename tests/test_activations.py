"""Every activation the specs allow, through each framework's *native* function with every
argument explicit, on ordinary and extreme inputs (|x| up to 1e4, -inf masks, all-masked rows)."""
from functools import partial

import jax
import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parity import tolerances

NATIVE = {  # name -> (torch, keras (TensorFlow backend), jax)
    "relu": (F.relu, keras.activations.relu, jax.nn.relu),
    "leaky_relu": (partial(F.leaky_relu, negative_slope=0.1), partial(keras.activations.leaky_relu, negative_slope=0.1),
                   partial(jax.nn.leaky_relu, negative_slope=0.1)),
    "elu": (partial(F.elu, alpha=1.0), partial(keras.activations.elu, alpha=1.0), partial(jax.nn.elu, alpha=1.0)),
    "selu": (F.selu, keras.activations.selu, jax.nn.selu),
    "gelu": (partial(F.gelu, approximate="none"), partial(keras.activations.gelu, approximate=False),
             partial(jax.nn.gelu, approximate=False)),
    "gelu_tanh": (partial(F.gelu, approximate="tanh"), partial(keras.activations.gelu, approximate=True),
                  partial(jax.nn.gelu, approximate=True)),
    "silu": (F.silu, keras.activations.silu, jax.nn.silu),
    "tanh": (torch.tanh, keras.activations.tanh, jax.numpy.tanh),
    "sigmoid": (torch.sigmoid, keras.activations.sigmoid, jax.nn.sigmoid),
    "softmax": (partial(F.softmax, dim=-1), partial(keras.activations.softmax, axis=-1),
                partial(jax.nn.softmax, axis=-1)),
    "log_softmax": (partial(F.log_softmax, dim=-1), partial(keras.ops.log_softmax, axis=-1),
                    partial(jax.nn.log_softmax, axis=-1)),
}
# TensorFlow's GELU and leaky ReLU kernels are float32-accurate even on float64 tensors
# (measured 5e-9 / 1e-9 off, see tests/test_pitfalls.py); the models use keras.ops formulas.
KERAS_FLOAT64 = {"gelu": 1e-8, "gelu_tanh": 1e-8, "leaky_relu": 1e-8}


def _inputs(dtype):
    ordinary = np.linspace(-8, 8, 161)
    extreme = np.array([-1e4, -100, -88, -80, -30, -1e-30, 0.0, 1e-30, 30, 80, 88, 100, 1e4])
    return np.concatenate([ordinary, extreme]).reshape(-1, 1).repeat(3, axis=1).T.astype(dtype) * [[1], [0.5], [2]]


def _run(fns, x):
    with jax.enable_x64(x.dtype == np.float64):
        return (fns[0](torch.from_numpy(x)).numpy(), np.asarray(fns[1](x)), np.asarray(fns[2](x)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NATIVE))
def test_native_activations_agree(name, dtype):
    x = _inputs(dtype).astype(dtype)
    outputs = dict(zip(("torch", "keras", "jax"), _run(NATIVE[name], x)))
    for framework, out in outputs.items():
        assert out.dtype == np.dtype(dtype), (framework, out.dtype)
    for a, b in (("torch", "keras"), ("torch", "jax"), ("keras", "jax")):
        finite = np.isfinite(outputs[a]) & np.isfinite(outputs[b])
        assert np.array_equal(np.isfinite(outputs[a]), np.isfinite(outputs[b])), (a, b)
        tolerance = tolerances.FORWARD[dtype].rtol
        if dtype == "float64" and "keras" in (a, b):
            tolerance = KERAS_FLOAT64.get(name, tolerance)
        # Per row: softmax rows have their own scale (a row of e^-200 values is still a distribution).
        for row in range(x.shape[0]):
            _, rel = tolerances.errors(outputs[a][row][finite[row]], outputs[b][row][finite[row]])
            assert rel <= tolerance, (name, dtype, a, b, row, rel)


@pytest.mark.parametrize("framework", range(3), ids=["torch", "keras", "jax"])
def test_softmax_with_minus_inf_masks(framework):
    softmax = NATIVE["softmax"][framework]
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], np.float32)
    out = np.asarray(softmax(torch.from_numpy(x)) if framework == 0 else softmax(x))
    np.testing.assert_allclose(out[0], [1 / (1 + np.e), 0.0, np.e / (1 + np.e)], rtol=1e-6)
    assert np.isnan(out[1]).all()  # a fully masked row is 0/0 in all three frameworks
    # The portable mask: the dtype's lowest finite value; a fully masked row is then uniform.
    safe = np.where(np.isinf(x), np.finfo(np.float32).min, x).astype(np.float32)
    out = np.asarray(softmax(torch.from_numpy(safe)) if framework == 0 else softmax(safe))
    np.testing.assert_allclose(out[1], [1 / 3] * 3, rtol=1e-6)


def test_subnormal_results_are_kept_by_torch_and_flushed_by_xla_and_tensorflow():
    x = np.array([[100.0, 0.0]], np.float32)  # e^-100 / (1 + e^-100) is 3.7e-44: subnormal in float32
    torch_out, keras_out, jax_out = _run(NATIVE["softmax"], x)
    assert 0 < torch_out[0, 1] < np.finfo(np.float32).tiny
    assert keras_out[0, 1] == 0.0 and jax_out[0, 1] == 0.0
