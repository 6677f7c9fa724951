"""The spec's activations as Keras functions, with every argument explicit.

Defaults differ across frameworks (torch GELU is exact, jax.nn.gelu is tanh-approximate;
leaky_relu's slope is 0.01 in torch and JAX, 0.2 in Keras 3), so nothing here relies on one.

GELU and leaky ReLU are written with keras.ops rather than keras.activations: on the TensorFlow
backend `tf.nn.gelu` and `tf.nn.leaky_relu` (whose `alpha` is a float32 op attribute) are only
float32-accurate on float64 tensors (measured 5e-9 and 1e-9 off torch, against 1e-12 wanted;
tests/test_activations.py keeps the measurement).
"""
import math
from functools import partial

import keras
from keras import ops


def activation(name: str, negative_slope: float = 0.01):
    return {
        "relu": keras.activations.relu,
        "tanh": keras.activations.tanh,
        "sigmoid": keras.activations.sigmoid,
        "gelu": _gelu,
        "gelu_tanh": _gelu_tanh,
        "leaky_relu": partial(_leaky_relu, negative_slope=negative_slope),
        "silu": keras.activations.silu,
        "step": step,
    }[name]


def step(z):
    """Heaviside step with step(0) = 0: the perceptron's threshold unit."""
    return keras.ops.cast(z > 0, z.dtype)


def _gelu(x):
    """Exact GELU, x * Phi(x) = x/2 * (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_tanh(x):
    """GELU's tanh approximation, x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def _leaky_relu(x, negative_slope):
    return ops.where(x >= 0, x, x * negative_slope)
