"""Backpropagation by hand: the MLP's forward and backward pass in numpy, written out.

The curriculum's backpropagation chapter as code: every gradient below is the chain rule
applied to one line of the forward pass, in reverse order. `tests/test_backprop.py` checks
it against torch, Keras/TensorFlow and JAX autodiff (float64, 1e-12) and against central
finite differences. Covers `mlp` specs without batch norm or dropout (those have their own
chapters); canonical names and layouts, so its gradients compare name by name.
"""
from __future__ import annotations

import math

import numpy as np

from parity.errors import SpecError
from parity.specs import Spec

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf is exact to the last bit, vectorised here.
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def activation_and_derivative(name: str, negative_slope: float, z: np.ndarray):
    """(f(z), f'(z)) for the spec's activation."""
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z >= 0, z, negative_slope * z), np.where(z >= 0, 1.0, negative_slope).astype(z.dtype)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1 - t * t
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s, s * (1 - s)
    if name == "silu":
        s = 1 / (1 + np.exp(-z))
        return z * s, s * (1 + z * (1 - s))
    if name == "gelu":  # z * Phi(z): Phi(z) + z * phi(z)
        cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
        pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return z * cdf, cdf + z * pdf
    if name == "gelu_tanh":  # z/2 (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z^3)
        u = _SQRT_2_OVER_PI * (z + 0.044715 * z**3)
        t = np.tanh(u)
        du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)
        return 0.5 * z * (1 + t), 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du
    raise SpecError(f"activation: expected one of relu, leaky_relu, tanh, sigmoid, silu, gelu, gelu_tanh, got {name!r}")


def _check(spec: Spec) -> None:
    if spec.architecture != "mlp" or spec.batch_norm or spec.dropout:
        raise SpecError(f"backprop by hand covers mlp specs without batch norm and dropout; got "
                        f"{spec.architecture} (batch_norm={getattr(spec, 'batch_norm', None)}, "
                        f"dropout={getattr(spec, 'dropout', None)})")


def forward(spec: Spec, state: dict, x: np.ndarray):
    """Logits and the cache the backward pass needs: each layer's input and pre-activation."""
    _check(spec)
    cache = []
    h = x  # (B, in_features)
    for i in range(len(spec.hidden_sizes)):
        z = h @ state[f"blocks.{i}.fc.weight"].T + state[f"blocks.{i}.fc.bias"]  # (B, hidden)
        a, da_dz = activation_and_derivative(spec.activation, spec.negative_slope, z)
        cache.append((h, da_dz))
        h = a
    logits = h @ state["head.weight"].T + state["head.bias"]  # (B, classes)
    return logits, (cache, h)


def loss_and_grads(spec: Spec, state: dict, x: np.ndarray, targets: np.ndarray):
    """Mean softmax cross-entropy and its gradient w.r.t. every parameter, by the chain rule."""
    logits, (cache, h_last) = forward(spec, state, x)
    batch = x.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)  # softmax is shift-invariant; exp stays finite
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(batch), targets].mean()

    # dL/dlogits = (softmax - onehot) / B: the mean over the batch divides every gradient by B.
    d_logits = np.exp(log_probs)
    d_logits[np.arange(batch), targets] -= 1
    d_logits /= batch
    grads = {"head.weight": d_logits.T @ h_last, "head.bias": d_logits.sum(axis=0)}
    d_h = d_logits @ state["head.weight"]  # back through the head: (B, hidden)
    for i in reversed(range(len(spec.hidden_sizes))):
        h_in, da_dz = cache[i]
        d_z = d_h * da_dz  # through the activation, elementwise
        grads[f"blocks.{i}.fc.weight"] = d_z.T @ h_in  # (out, in), like the weight
        grads[f"blocks.{i}.fc.bias"] = d_z.sum(axis=0)
        d_h = d_z @ state[f"blocks.{i}.fc.weight"]  # to the layer below
    return float(loss), {name: grads[name] for name in state}


def finite_difference_grads(spec: Spec, state: dict, x: np.ndarray, targets: np.ndarray,
                            step: float = 1e-6) -> dict[str, np.ndarray]:
    """Central differences (L(w + h) - L(w - h)) / 2h for every parameter entry (small models only)."""
    grads = {}
    for name, value in state.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            original = value[index]
            value[index] = original + step
            plus = loss_and_grads(spec, state, x, targets)[0]
            value[index] = original - step
            minus = loss_and_grads(spec, state, x, targets)[0]
            value[index] = original
            grad[index] = (plus - minus) / (2 * step)
        grads[name] = grad
    return grads
