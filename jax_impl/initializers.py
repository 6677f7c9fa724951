"""jax.nn.initializers (what Flax NNX layers take) by canonical name, matched to torch.nn.init.

`jax.nn.initializers.glorot_normal`, `he_normal` and `lecun_normal` draw a *truncated* normal;
the canonical ones are untruncated, so those use variance_scaling(..., "normal"). Flax kernels
are (in, out) / HWIO: fans come from the native shape, the draw goes back through the layout table.
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from parity import layouts


def _native(name: str, mode: str):
    init = jax.nn.initializers
    if name == "default":  # nnx.Linear's and nnx.Conv's default kernel_init
        return nnx.initializers.lecun_normal()
    if name == "glorot_uniform":
        return init.glorot_uniform()
    if name == "glorot_normal":
        return init.variance_scaling(1.0, "fan_avg", "normal")
    if name == "he_uniform":
        return init.variance_scaling(2.0, mode, "uniform")
    if name == "he_normal":
        return init.variance_scaling(2.0, mode, "normal")
    if name == "lecun_normal":
        return init.variance_scaling(1.0, "fan_in", "normal")
    return init.orthogonal()


def sample(name: str, shape, seed: int, mode: str = "fan_in"):
    """A canonical-layout draw (numpy) of the named initializer through jax.nn.initializers."""
    kind = "linear" if len(shape) == 2 else "conv2d"
    native_shape = layouts.to_native("jax", kind, np.zeros(shape)).shape
    with jax.enable_x64(True):
        kernel = np.asarray(_native(name, mode)(jax.random.key(seed), native_shape, jnp.float64))
    return layouts.from_native("jax", kind, kernel)
