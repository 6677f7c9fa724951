"""Layers shared by the models, channels-last."""
from functools import partial

import jax.numpy as jnp
import numpy as np
from flax import nnx


class BatchNorm(nnx.BatchNorm):
    """nnx.BatchNorm with torch's running statistics.

    Flax normalises like torch (biased batch variance; `use_fast_variance=False` so the variance
    is computed as mean((x - mean)^2), not the cancellation-prone E[x^2] - E[x]^2), but updates
    `var` with the biased variance and keeps no batch counter. The canonical state (torch's) has
    the unbiased running variance and `num_batches_tracked`, so training mode replaces the
    variance update and counts batches. `momentum` is given in torch's convention and mapped to
    Flax's (running = momentum * running + (1 - momentum) * batch): flax = 1 - torch.
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float, dtype, rngs: nnx.Rngs):
        super().__init__(num_features, momentum=1.0 - momentum, epsilon=eps, use_fast_variance=False,
                         dtype=dtype, param_dtype=dtype, rngs=rngs)
        # nnx.BatchNorm keeps its running statistics in float32 whatever the param dtype, which
        # would round a float64 state on load: keep them in the model's dtype, like torch.
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), dtype))
        # int32: JAX has int64 only under x64; the adapter exports it as the canonical int64.
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x, use_running_average=None, *, mask=None):
        if self.use_running_average if use_running_average is None else use_running_average:
            return super().__call__(x, use_running_average=True)
        reduce_axes = tuple(range(x.ndim - 1))
        count = x.size // x.shape[-1]
        previous = self.var[...]
        y = super().__call__(x, use_running_average=False)
        unbiased = x.var(axis=reduce_axes) * (count / (count - 1))
        self.var[...] = previous * self.momentum + unbiased * (1.0 - self.momentum)
        self.num_batches_tracked[...] += 1
        return y


class Sequential(nnx.Module):
    """Children named by position ("features.0.kernel"): torchvision's container.

    Not nnx.Sequential (children under "layers.": "features.layers.0") nor an nnx.List subclass
    (torch's names, but its int child keys sit beside the str "__call__" key nnx.capture sows, and
    the trace fails sorting them). Plain functions (jax.nn.relu) may be children, like torch's
    parameterless modules.
    """

    def __init__(self, *layers):
        self.size = len(layers)
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __call__(self, x):
        for i in range(self.size):
            x = getattr(self, str(i))(x)
        return x


class Conv2d(nnx.Conv):
    """A 2D convolution with torch's symmetric zero padding (the canonical one).

    The padding is always explicit: nnx.Conv defaults to "SAME", and XLA's "SAME" pads
    asymmetrically at stride 2 (a 7x7/2 conv on 224 pads (2, 3), torch pads (3, 3)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, *, dtype, rngs: nnx.Rngs):
        super().__init__(in_channels, out_channels, (kernel_size, kernel_size), strides=stride,
                         padding=((padding, padding), (padding, padding)), use_bias=bias, dtype=dtype,
                         param_dtype=dtype, rngs=rngs)

    def __call__(self, x):  # (B, H, W, in_channels)
        # Not inherited: nnx.capture (the per-layer trace) instruments only the methods a class
        # defines itself, so a subclass without its own __call__ would be missing from traces.
        return super().__call__(x)


class DepthwiseConv2d(nnx.Conv):
    """One kxk filter per channel: an nnx.Conv with feature_group_count = channels (Flax has no
    depthwise layer); explicit symmetric padding, as in Conv2d."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, *, dtype, rngs: nnx.Rngs):
        super().__init__(channels, channels, (kernel_size, kernel_size), strides=stride,
                         padding=((padding, padding), (padding, padding)), feature_group_count=channels,
                         use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):  # (B, H, W, channels); defined here to be traced, see Conv2d
        return super().__call__(x)


class MaxPool2d(nnx.Module):
    """Max pooling over (B, H, W, C); torch pads with -inf, so padding never wins the max.

    The -inf padding is explicit because jax2onnx replaces nnx.max_pool with a version that takes
    keyword arguments and only "SAME"/"VALID" padding (it would read explicit pairs as "VALID").
    """

    def __init__(self, kernel_size: int, stride: int, padding: int = 0):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def __call__(self, x):  # (B, H, W, C)
        k, s, p = self.kernel_size, self.stride, self.padding
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf)
        return nnx.max_pool(x, window_shape=(k, k), strides=(s, s), padding="VALID")


class AdaptiveAvgPool2d(nnx.Module):
    """Average over `output_size` x `output_size` bins; bin i spans [floor(i*H/out), ceil((i+1)*H/out)),
    so bins overlap when the output does not divide the input.

    Flax has no adaptive pool. The bins depend only on the static H and W, so each side is a
    constant (out, H) averaging matrix and the pool is one einsum: jit- and ONNX-friendly.
    """

    def __init__(self, output_size: int):
        self.output_size = output_size

    def __call__(self, x):  # (B, H, W, C)
        rows = _bin_means(x.shape[1], self.output_size, x.dtype)  # (out, H)
        cols = _bin_means(x.shape[2], self.output_size, x.dtype)  # (out, W)
        return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols)  # (B, out, out, C)


def _bin_means(size: int, out: int, dtype):
    """(out, size) matrix whose row i averages torch's adaptive bin i."""
    matrix = np.zeros((out, size))
    for i in range(out):
        start, end = i * size // out, -(-(i + 1) * size // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return jnp.asarray(matrix, dtype)


def pooling(kind: str):
    """2x2, stride-2 pooling over (B, H, W, C)."""
    return {"avg": partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2)),
            "max": partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2))}[kind]
