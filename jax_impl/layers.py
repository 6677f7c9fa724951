"""Layers shared by the models, channels-last."""
from functools import partial

import jax.numpy as jnp
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


def pooling(kind: str):
    """2x2, stride-2 pooling over (B, H, W, C)."""
    return {"avg": partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2)),
            "max": partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2))}[kind]
