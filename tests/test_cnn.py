"""The CNN porting pitfalls, each shown on the frameworks' own layers and handled by ours.

Keras/Flax "same" padding at stride 2, max-pool padding, AdaptiveAvgPool2d's overlapping bins,
depthwise kernel layouts, EfficientNet's channel rounding — each native default against torch,
then our layer against torch.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parity
from parity import layouts, tolerances
from parity.specs.cnn import make_divisible

RTOL = tolerances.FORWARD["float64"].rtol


def keras_layers():
    import keras_impl.layers
    return keras_impl.layers


def jax_layers():
    import jax_impl.layers
    return jax_impl.layers


def run_channels_last(framework, layer, x_nchw):
    x = layouts.activation_to_native(framework, x_nchw, "image")
    return layouts.activation_from_native(framework, np.asarray(layer(x)), "image")


def run_keras(layer, x_nchw):
    return run_channels_last("keras", layer, x_nchw)


def run_jax(layer, x_nchw):
    import jax
    with jax.enable_x64(True):
        return run_channels_last("jax", layer, x_nchw)


def close(a, b):
    return a.shape == b.shape and tolerances.errors(a, b)[1] <= RTOL


def conv_layers(framework, weight, stride, padding, depthwise=False):
    """(our layer, the native layer with "same" padding), both holding the canonical `weight`."""
    out_channels, in_per_group, k, _ = weight.shape
    kind = "depthwise_conv2d" if depthwise else "conv2d"
    kernel = layouts.to_native(framework, kind, weight)
    if framework == "keras":
        import keras
        L = keras_layers()
        ours = (L.DepthwiseConv2d(out_channels, k, stride, padding, bias=False, dtype="float64") if depthwise
                else L.Conv2d(in_per_group, out_channels, k, stride, padding, bias=False, dtype="float64"))
        native = (keras.layers.DepthwiseConv2D(k, stride, padding="same", use_bias=False, dtype="float64")
                  if depthwise else keras.layers.Conv2D(out_channels, k, stride, padding="same", use_bias=False,
                                                        dtype="float64"))
        native.build((None, None, None, out_channels if depthwise else in_per_group))
        for layer in (ours, native):
            layer.kernel.assign(kernel)
        return ours, native
    import jax
    from flax import nnx
    L = jax_layers()
    with jax.enable_x64(True):
        rngs = nnx.Rngs(0)
        in_channels = out_channels if depthwise else in_per_group
        ours = (L.DepthwiseConv2d(out_channels, k, stride, padding, bias=False, dtype=np.float64, rngs=rngs)
                if depthwise else L.Conv2d(in_channels, out_channels, k, stride, padding, bias=False,
                                           dtype=np.float64, rngs=rngs))
        native = nnx.Conv(in_channels, out_channels, (k, k), strides=stride, padding="SAME", use_bias=False,
                          feature_group_count=out_channels if depthwise else 1, dtype=np.float64,
                          param_dtype=np.float64, rngs=rngs)
        for layer in (ours, native):
            layer.kernel[...] = kernel
    return ours, native


RUN = {"keras": run_keras, "jax": run_jax}


@pytest.mark.parametrize("framework", ["keras", "jax"])
@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_same_padding_at_stride_2_is_not_torchs(framework, depthwise):
    """A 7x7/2 conv on an even input: torch pads 3 on each side; Keras' and XLA's "same" pad 2
    before and 3 after, so every output pixel moves. Explicit symmetric padding is torch's."""
    rng = np.random.default_rng(0)
    channels = 4
    x = rng.standard_normal((2, channels, 16, 16))
    weight = rng.standard_normal((channels, 1 if depthwise else channels, 7, 7))
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), stride=2, padding=3,
                    groups=channels if depthwise else 1).numpy()
    ours, native = conv_layers(framework, weight, 2, 3, depthwise)
    assert close(RUN[framework](ours, x), want)
    same = RUN[framework](native, x)
    assert same.shape == want.shape and not close(same, want)


@pytest.mark.parametrize("framework", ["keras", "jax"])
def test_max_pool_padding_is_minus_infinity_and_symmetric(framework):
    """ResNet's 3x3/2 max-pool, padding 1: torch pads with -inf on both sides. Keras' "same"
    pads the end only (another window grid); zero padding would win the max of negative maps."""
    x = -np.abs(np.random.default_rng(1).standard_normal((2, 3, 8, 8)))  # all negative: zeros would show
    want = F.max_pool2d(torch.from_numpy(x), 3, 2, 1).numpy()
    if framework == "keras":
        import keras
        ours, same = keras_layers().MaxPool2d(3, 2, 1, dtype="float64"), keras.layers.MaxPooling2D(
            3, 2, padding="same", dtype="float64")
        assert not close(run_keras(same, x), want)
    else:
        ours = jax_layers().MaxPool2d(3, 2, 1)
    assert close(RUN[framework](ours, x), want)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(1, 13), width=st.integers(1, 13), output_size=st.integers(1, 7))
def test_adaptive_average_pool_bins_match_torch(height, width, output_size):
    """torch's bin i spans [floor(i*H/out), ceil((i+1)*H/out)): bins overlap and differ in size when
    `out` does not divide H (VGG's 7x7 pool on a 5x5 map), and repeat pixels when out > H."""
    x = np.random.default_rng(height * 100 + width).standard_normal((2, 3, height, width))
    want = F.adaptive_avg_pool2d(torch.from_numpy(x), output_size).numpy()
    assert close(run_keras(keras_layers().AdaptiveAvgPool2d(output_size, dtype="float64"), x), want)
    assert close(run_jax(jax_layers().AdaptiveAvgPool2d(output_size), x), want)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(value=st.floats(1.0, 4096.0))
def test_channel_rounding_is_torchvisions(value, torchvision):
    """EfficientNet's widths: round to a multiple of 8, but never more than 10 % down."""
    from torchvision.models._utils import _make_divisible
    assert make_divisible(value) == _make_divisible(value, 8)


def stochastic_depth(framework, p):
    """(callable training-mode branch(x_nchw), the framework's layer) for StochasticDepth(p)."""
    if framework == "torch":
        from pytorch_impl.models.efficientnet import StochasticDepth
        torch.manual_seed(0)
        layer = StochasticDepth(p).train()
        return lambda x: layer(torch.from_numpy(x)).numpy()
    if framework == "keras":
        import keras
        from keras_impl.models.efficientnet import StochasticDepth
        keras.utils.set_random_seed(0)
        layer = StochasticDepth(p, dtype="float32")
        return lambda x: run_keras(lambda y: layer(y, training=True), x)
    from flax import nnx
    from jax_impl.models.efficientnet import StochasticDepth
    layer = StochasticDepth(p, rngs=nnx.Rngs(dropout=0))
    layer.train()
    return lambda x: run_channels_last("jax", layer, x)


@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_stochastic_depth_drops_whole_examples_at_rate_p(framework):
    """EfficientNet's residual branches in training mode (torchvision mode="row"): each example's
    whole branch is kept with probability 1 - p and then scaled by 1 / (1 - p). The three random
    streams differ, so this is statistical; exact training-mode checks run with p = 0."""
    p, n = 0.3, 20_000
    x = np.ones((n, 2, 3, 3), np.float32)
    y = stochastic_depth(framework, p)(x)
    per_example = y.reshape(n, -1)
    assert np.all(per_example == per_example[:, :1])  # one draw per example, not per element
    kept = per_example[:, 0] != 0
    np.testing.assert_allclose(per_example[kept, 0], 1 / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n)  # 4 standard errors


def test_keras_symbolic_shapes_count_the_explicit_padding():
    """Keras infers the shapes of a functional graph (keras.Input) from `compute_output_shape`,
    not `call`: Conv2D's own ignores padding added in `call` (it reported 109 for a 7x7/2 conv
    with torch's padding 3 on 224, not 112), so our padded layers override it."""
    import keras
    L = keras_layers()
    x = keras.Input((224, 224, 3))
    assert L.Conv2d(3, 8, 7, 2, 3, dtype="float32")(x).shape == (None, 112, 112, 8)
    assert L.MaxPool2d(3, 2, 1, dtype="float32")(x).shape == (None, 112, 112, 3)


# float32 trajectories of these tiny batch-norm nets drift apart ~10x per SGD step (measured at
# lr 0.05, momentum 0.9: 2.5e-6, 3e-5, 1.5e-3 for ResNet-50 tiny): batch statistics over 8 values
# per channel in the last stages amplify each framework's rounding. float64 shows the same growth
# from 4e-14 (3.9e-12 after step 3), so it is conditioning, not a difference in the math: float32 is
# checked on the first step, float64 on three.
STEPS = {"float32": 1, "float64": 3}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["resnet18", "densenet121", *(pytest.param(name, marks=pytest.mark.slow)
                                                                 for name in ("vgg11_bn", "resnet50", "efficientnet_b0"))])
def test_training_steps_match_with_batch_norm(name, dtype):
    """SGD-momentum steps in training mode from one state: parameters and the running statistics
    each batch-norm layer updates stay equal across the frameworks, step by step."""
    from parity.optimizers import TRAJECTORY, optimizer
    from parity.training import train_trajectory
    spec = parity.spec(name, "tiny").deterministic()
    state = parity.init_state(spec, random_norms=True)
    batches = [parity.example_batch(spec, 8, seed) for seed in range(STEPS[dtype])]
    runs = {f: train_trajectory(f, spec, state, optimizer("sgd", lr=0.01, momentum=0.9), batches, dtype=dtype)
            for f in parity.FRAMEWORKS}
    for framework in ("keras", "jax"):
        for step, (ours, reference) in enumerate(zip(runs[framework], runs["torch"])):
            for key, value in reference.items():
                error = tolerances.errors(ours[key], value)[1]
                assert error <= TRAJECTORY[dtype].rtol, f"{framework} {key} after step {step + 1}: {error:.1e}"
    counter = next(k for k in state if k.endswith("num_batches_tracked"))
    assert all(int(runs[f][-1][counter]) == STEPS[dtype] for f in parity.FRAMEWORKS)
