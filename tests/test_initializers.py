"""Named initializers built with each framework's native API match the canonical distribution
(moments and a Kolmogorov-Smirnov test on large draws), and each framework's *default* per layer
type is what docs/initialization.md says."""
import math

import keras
import numpy as np
import pytest
import torch
from flax import nnx
from scipy import stats

import parity
from parity import initializers as init
from parity.frameworks import impl_module

SHAPES = [(256, 512), (64, 32, 3, 3)]  # Linear (out, in), Conv OIHW: 131k and 18k draws
P_VALUE = 1e-3  # seeds are fixed, so each p-value is one deterministic number; 1e-3 flags real mismatches


# Only the he_* initializers take a fan mode.
NAMED = [(n, "fan_in") for n in init.INITIALIZERS if n not in ("orthogonal", "default")] + [("he_uniform", "fan_out"),
                                                                         ("he_normal", "fan_out")]


@pytest.mark.parametrize("shape", SHAPES, ids=["linear", "conv2d"])
@pytest.mark.parametrize("name, mode", NAMED)
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_native_initializer_matches_the_canonical_distribution(framework, name, shape, mode):
    draw = impl_module(framework, "initializers").sample(name, shape, seed=3, mode=mode)
    assert draw.shape == shape and draw.dtype == np.float64
    reference = init.reference_distribution(name, shape, mode)
    n = draw.size
    assert abs(draw.mean()) < 5 * reference.std() / math.sqrt(n)
    assert abs(draw.std() / reference.std() - 1) < 5 * math.sqrt(2 / n) + 1e-3
    assert stats.kstest(draw.ravel(), reference.cdf).pvalue > P_VALUE


@pytest.mark.parametrize("shape", SHAPES, ids=["linear", "conv2d"])
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_orthogonal_rows_are_orthonormal(framework, shape):
    draw = impl_module(framework, "initializers").sample("orthogonal", shape, seed=3)
    rows = draw.reshape(shape[0], -1)
    np.testing.assert_allclose(rows @ rows.T, np.eye(shape[0]), atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES, ids=["linear", "conv2d"])
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_framework_default_initializer(framework, shape):
    draw = impl_module(framework, "initializers").sample("default", shape, seed=3)
    assert stats.kstest(draw.ravel(), init.default_distribution(framework, shape).cdf).pvalue > P_VALUE


def test_numpy_reference_samples_its_own_distribution():
    for name in ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal"):
        draw = init.reference_sample(name, (128, 256), seed=1)
        assert stats.kstest(draw.ravel(), init.reference_distribution(name, (128, 256)).cdf).pvalue > P_VALUE
    rows = init.reference_sample("orthogonal", (32, 64))
    np.testing.assert_allclose(rows @ rows.T, np.eye(32), atol=1e-12)


def test_keras_and_jax_named_normals_are_truncated_by_default():
    """The pitfall: same variance, no tails beyond 2 standard deviations of the underlying normal."""
    import jax

    fan_in = 512
    sigma = math.sqrt(2 / fan_in)
    keras_draw = np.asarray(keras.initializers.HeNormal(seed=0)((fan_in, 256)))
    jax_draw = np.asarray(jax.nn.initializers.he_normal()(jax.random.key(0), (fan_in, 256)))
    torch_draw = torch.nn.init.kaiming_normal_(torch.empty(256, fan_in), nonlinearity="relu").numpy()
    for draw in (keras_draw, jax_draw, torch_draw):
        assert abs(draw.std() / sigma - 1) < 0.02  # all three: variance 2 / fan_in
    bound = 2 * sigma / 0.87962566103423978  # truncation at 2 sigma of the pre-truncation normal
    assert np.abs(keras_draw).max() <= bound and np.abs(jax_draw).max() <= bound
    assert np.abs(torch_draw).max() > bound


# --- framework defaults per layer type (the table in docs/initialization.md) -------------------

def _ks(values, distribution):
    return stats.kstest(np.ravel(values), distribution.cdf).pvalue


def test_torch_defaults():
    linear = torch.nn.Linear(512, 256)
    bound = 1 / math.sqrt(512)  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert _ks(linear.weight.detach(), stats.uniform(-bound, 2 * bound)) > P_VALUE
    assert np.abs(linear.bias.detach().numpy()).max() <= bound and linear.bias.detach().std() > 0
    conv = torch.nn.Conv2d(32, 64, 3)
    bound = 1 / math.sqrt(32 * 9)
    assert _ks(conv.weight.detach(), stats.uniform(-bound, 2 * bound)) > P_VALUE
    bn = torch.nn.BatchNorm2d(8)
    assert bn.weight.detach().eq(1).all() and bn.bias.detach().eq(0).all()


def test_keras_defaults():
    dense = keras.layers.Dense(256)
    dense.build((None, 512))
    bound = math.sqrt(6 / (512 + 256))  # glorot_uniform
    assert _ks(dense.kernel.numpy(), stats.uniform(-bound, 2 * bound)) > P_VALUE
    assert np.all(dense.bias.numpy() == 0)
    conv = keras.layers.Conv2D(64, 3)
    conv.build((None, 16, 16, 32))
    bound = math.sqrt(6 / (9 * 32 + 9 * 64))
    assert _ks(conv.kernel.numpy(), stats.uniform(-bound, 2 * bound)) > P_VALUE
    assert np.all(conv.bias.numpy() == 0)


def test_flax_defaults():
    linear = nnx.Linear(512, 256, rngs=nnx.Rngs(0))
    sigma = math.sqrt(1 / 512)  # lecun_normal: truncated normal with variance 1 / fan_in
    truncated = stats.truncnorm(-2, 2, scale=sigma / 0.87962566103423978)
    assert _ks(np.asarray(linear.kernel[...]), truncated) > P_VALUE
    assert np.all(np.asarray(linear.bias[...]) == 0)
    conv = nnx.Conv(32, 64, (3, 3), rngs=nnx.Rngs(0))
    truncated = stats.truncnorm(-2, 2, scale=math.sqrt(1 / (9 * 32)) / 0.87962566103423978)
    assert _ks(np.asarray(conv.kernel[...]), truncated) > P_VALUE


def test_unknown_initializer_and_mode():
    with pytest.raises(parity.SpecError, match=r"expected one of \['glorot_uniform'.*got 'xavier'"):
        init.check("xavier")
    with pytest.raises(parity.SpecError, match=r"mode: expected one of \['fan_in', 'fan_out'\], got 'fan_avg'"):
        init.check("he_normal", "fan_avg")
