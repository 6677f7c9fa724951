"""Named weight initializers: the canonical definitions and their numpy reference distributions.

Canonical semantics are torch.nn.init's, untruncated: `he_normal` is N(0, 2/fan), not the
truncated normal that Keras' `HeNormal` and `jax.nn.initializers.he_normal` draw by default
(same variance, different tails; docs/initialization.md). Each framework builds its *native*
initializer configured to match (`<impl>/initializers.py`), and tests/test_initializers.py
checks moments and a Kolmogorov-Smirnov test on large draws against `reference_distribution`.
"""
from __future__ import annotations

import math

import numpy as np

from parity.errors import SpecError

INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "orthogonal", "default")
# "default" is each framework's own default kernel initializer for Linear/Dense and Conv: it is
# *meant* to differ between frameworks (docs/initialization.md), so its reference is per framework.
MODES = ("fan_in", "fan_out")


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a canonical weight: Linear (out, in), Conv (out, in, kH, kW)."""
    if len(shape) < 2:
        raise SpecError(f"fans: expected a weight of rank >= 2 (out, in, ...), got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def check(name: str, mode: str = "fan_in") -> None:
    if name not in INITIALIZERS:
        raise SpecError(f"initializer: expected one of {list(INITIALIZERS)}, got {name!r}")
    if mode not in MODES:
        raise SpecError(f"initializer mode: expected one of {list(MODES)}, got {mode!r}")


def default_distribution(framework: str, shape: tuple[int, ...]):
    """The scipy.stats distribution of a framework's default Linear/Conv kernel initializer:
    torch kaiming_uniform(a=sqrt(5)) = U(±1/sqrt(fan_in)); Keras glorot_uniform; Flax
    lecun_normal, a normal truncated at 2 standard deviations and rescaled to variance 1/fan_in."""
    from scipy import stats

    fan_in, fan_out = fans(shape)
    if framework == "torch":
        bound = 1 / math.sqrt(fan_in)
        return stats.uniform(-bound, 2 * bound)
    if framework == "keras":
        return reference_distribution("glorot_uniform", shape)
    truncation_std = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]
    return stats.truncnorm(-2, 2, scale=math.sqrt(1 / fan_in) / truncation_std)


def reference_distribution(name: str, shape: tuple[int, ...], mode: str = "fan_in"):
    """The scipy.stats distribution every entry is drawn from (not defined for `orthogonal`,
    whose entries are dependent, checked by W Wᵀ = I instead, nor for `default`, which differs
    per framework: `default_distribution`)."""
    from scipy import stats

    check(name, mode)
    if name == "default":
        raise SpecError("default: each framework's own; see default_distribution(framework, shape)")
    fan_in, fan_out = fans(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if name == "glorot_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return stats.uniform(-bound, 2 * bound)
    if name == "glorot_normal":
        return stats.norm(0, math.sqrt(2.0 / (fan_in + fan_out)))
    if name == "he_uniform":
        bound = math.sqrt(6.0 / fan)
        return stats.uniform(-bound, 2 * bound)
    if name == "he_normal":
        return stats.norm(0, math.sqrt(2.0 / fan))
    if name == "lecun_normal":
        return stats.norm(0, math.sqrt(1.0 / fan_in))
    raise SpecError("orthogonal: entries are not independent draws; check W Wᵀ = I instead")


def reference_sample(name: str, shape: tuple[int, ...], seed: int = 0, mode: str = "fan_in") -> np.ndarray:
    """A numpy draw of the canonical initializer (orthogonal: QR of a Gaussian, sign-corrected)."""
    rng = np.random.default_rng(seed)
    if name == "orthogonal":
        rows, cols = shape[0], math.prod(shape[1:])
        q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        q *= np.sign(np.diag(r))  # makes the distribution uniform (Haar) over orthogonal matrices
        return (q if rows >= cols else q.T).reshape(shape)
    return reference_distribution(name, shape, mode).rvs(size=shape, random_state=rng)
