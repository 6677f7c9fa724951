"""The spec's activations as torch functions, with every argument explicit.

Defaults differ across frameworks (torch GELU is exact, jax.nn.gelu is tanh-approximate;
leaky_relu's slope is 0.01 in torch and JAX, 0.2 in Keras 3), so nothing here relies on one.
"""
from functools import partial

import torch
import torch.nn.functional as F


def activation(name: str, negative_slope: float = 0.01):
    return {
        "relu": F.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": partial(F.gelu, approximate="none"),
        "gelu_tanh": partial(F.gelu, approximate="tanh"),
        "leaky_relu": partial(F.leaky_relu, negative_slope=negative_slope),
        "silu": F.silu,
        "step": step,
    }[name]


def step(z):
    """Heaviside step with step(0) = 0: the perceptron's threshold unit."""
    return (z > 0).to(z.dtype)
