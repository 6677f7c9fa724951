"""The spec's activations as JAX functions, with every argument explicit.

Defaults differ across frameworks (torch GELU is exact, jax.nn.gelu is tanh-approximate;
leaky_relu's slope is 0.01 in torch and JAX, 0.2 in Keras 3), so nothing here relies on one.
"""
from functools import partial

import jax
import jax.numpy as jnp


def activation(name: str, negative_slope: float = 0.01):
    return {
        "relu": jax.nn.relu,
        "tanh": jnp.tanh,
        "sigmoid": jax.nn.sigmoid,
        "gelu": partial(jax.nn.gelu, approximate=False),
        "gelu_tanh": partial(jax.nn.gelu, approximate=True),
        "leaky_relu": partial(jax.nn.leaky_relu, negative_slope=negative_slope),
        "silu": jax.nn.silu,
        "step": step,
    }[name]


def step(z):
    """Heaviside step with step(0) = 0: the perceptron's threshold unit."""
    return (z > 0).astype(z.dtype)
