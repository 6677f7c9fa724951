"""keras.initializers by canonical name, configured to match torch.nn.init.

Keras' named normal initializers (GlorotNormal, HeNormal, LecunNormal) draw a *truncated*
normal; the canonical ones are untruncated, so those go through VarianceScaling with
distribution="untruncated_normal". Keras kernels are (in, out) / HWIO: fans are computed on
the native shape and the draw is converted back with the layout table.
"""
import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import numpy as np

from parity import layouts


def _native(name: str, mode: str, seed: int):
    if name in ("glorot_uniform", "default"):  # Dense's and Conv2D's default kernel_initializer
        return keras.initializers.GlorotUniform(seed=seed)
    if name == "glorot_normal":
        return keras.initializers.VarianceScaling(1.0, "fan_avg", "untruncated_normal", seed=seed)
    if name == "he_uniform":
        return keras.initializers.VarianceScaling(2.0, mode, "uniform", seed=seed)
    if name == "he_normal":
        return keras.initializers.VarianceScaling(2.0, mode, "untruncated_normal", seed=seed)
    if name == "lecun_normal":
        return keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal", seed=seed)
    return keras.initializers.Orthogonal(seed=seed)


def sample(name: str, shape, seed: int, mode: str = "fan_in"):
    """A canonical-layout draw (numpy) of the named initializer through keras.initializers."""
    kind = "linear" if len(shape) == 2 else "conv2d"
    native_shape = layouts.to_native("keras", kind, np.zeros(shape)).shape
    kernel = np.asarray(_native(name, mode, seed)(native_shape, dtype="float64"))
    return layouts.from_native("keras", kind, kernel)
