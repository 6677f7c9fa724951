"""Layers shared by the models, channels-last."""
import keras
import numpy as np


class BatchNorm(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization with torch's running statistics.

    Keras normalises exactly like torch (biased batch variance) but updates `moving_variance`
    with the biased variance too, and keeps no batch counter. The canonical state (torch's)
    has the unbiased running variance and `num_batches_tracked`, so training mode replaces the
    variance update and counts batches. `momentum` is given in torch's convention and mapped
    to Keras' (running = momentum * running + (1 - momentum) * batch): keras = 1 - torch.
    """

    def __init__(self, *, eps: float, momentum: float, dtype):
        super().__init__(axis=-1, epsilon=eps, momentum=1.0 - momentum, dtype=dtype)

    def build(self, input_shape):
        super().build(input_shape)
        self.num_batches_tracked = self.add_weight(shape=(), dtype="int64", initializer="zeros",
                                                   trainable=False, name="num_batches_tracked")

    def call(self, x, training=None, mask=None):
        if not (training and self.trainable):  # trainable=False: inference mode, like Keras' own layer
            return super().call(x, training=False)
        reduce_axes = tuple(range(len(x.shape) - 1))
        # Values per channel; dynamic, because model.fit traces with an unknown batch size.
        count = keras.ops.cast(keras.ops.size(x) // x.shape[-1], x.dtype)
        previous = keras.ops.copy(self.moving_variance)  # a snapshot: a plain read can alias the variable
        y = super().call(x, training=True)
        unbiased = keras.ops.var(x, axis=reduce_axes) * (count / (count - 1))
        self.moving_variance.assign(previous * self.momentum + unbiased * (1.0 - self.momentum))
        self.num_batches_tracked.assign_add(1)
        return y


class Sequential(keras.layers.Layer):
    """Children named by position, as attributes "0", "1", ... ("features.0.weight"): torchvision's
    container. Each child gets `training`; Keras drops it for layers whose call takes none."""

    def __init__(self, *layers, dtype):
        super().__init__(dtype=dtype)
        self.size = len(layers)
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)
        # No state of its own, so built now: Keras builds a layer with an unbuilt child by tracing
        # its call, and nested containers retraced the whole model at every level (3 s for EfficientNet).
        # Each child builds on its first call.
        self.built = True

    def call(self, x, training=False):
        for i in range(self.size):
            x = getattr(self, str(i))(x, training=training)
        return x


class _TorchPadding:
    """Mixin for a Keras conv/pool layer run with padding="valid" after torch's symmetric padding:
    `padding_pixels` on every side of H and W, filled with `pad_value`."""
    pad_value = 0.0

    def call(self, x):  # (B, H, W, C)
        p = self.padding_pixels
        if p:
            x = keras.ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=self.pad_value)
        return super().call(x)

    def compute_output_shape(self, input_shape):
        """Keras infers symbolic shapes (keras.Input) from this, not from `call`: add the padding."""
        batch, height, width, channels = input_shape
        padded = [None if n is None else n + 2 * self.padding_pixels for n in (height, width)]
        return super().compute_output_shape((batch, *padded, channels))


class Conv2d(_TorchPadding, keras.layers.Conv2D):
    """keras.layers.Conv2D with torch's symmetric zero padding, applied explicitly before a "valid" conv.

    Keras' padding="same" is not torch's padding=(k - 1) // 2: at stride 2 it puts the odd pixel at the
    end (a 7x7/2 conv on 224 pads (2, 3), torch pads (3, 3)), which shifts every output by one pixel.
    `in_channels` builds the kernel now, so an input of the wrong width fails with the layer's name.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, *, dtype):
        super().__init__(out_channels, kernel_size, strides=stride, padding="valid", use_bias=bias, dtype=dtype)
        self.padding_pixels = padding
        self.build((None, None, None, in_channels))


class DepthwiseConv2d(_TorchPadding, keras.layers.DepthwiseConv2D):
    """One kxk filter per channel (depth multiplier 1), torch's symmetric zero padding as in `Conv2d`."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, *, dtype):
        super().__init__(kernel_size, strides=stride, padding="valid", depth_multiplier=1, use_bias=bias,
                         dtype=dtype)
        self.padding_pixels = padding
        self.build((None, None, None, channels))


class MaxPool2d(_TorchPadding, keras.layers.MaxPooling2D):
    """Max pooling; torch pads with -inf, so padding never wins the max. Padded explicitly, then
    "valid" (Keras' "same" pads at the end only, like its convolutions)."""
    pad_value = -np.inf

    def __init__(self, kernel_size: int, stride: int, padding: int = 0, *, dtype):
        super().__init__(kernel_size, strides=stride, padding="valid", dtype=dtype)
        self.padding_pixels = padding


class AdaptiveAvgPool2d(keras.layers.Layer):
    """Average over `output_size` x `output_size` bins; bin i spans [floor(i*H/out), ceil((i+1)*H/out)),
    so bins overlap when the output does not divide the input. Keras has no such layer.

    Bin sums are two contractions with constant 0/1 matrices built from the input's static size, then
    divided by the bin areas, as torch does; size 1 is a plain mean. Static shapes keep it XLA- and
    ONNX-friendly.
    """

    def __init__(self, output_size: int, *, dtype):
        super().__init__(dtype=dtype)
        self.output_size = output_size
        self.built = True  # no state; an unbuilt child makes Keras trace its parent to build it

    def _bins(self, size: int):
        """(output_size, size) 0/1 membership of each input position in each bin."""
        out = self.output_size
        bins = np.zeros((out, size))
        for i in range(out):
            bins[i, i * size // out:-(-(i + 1) * size // out)] = 1.0
        return bins

    def call(self, x):  # (B, H, W, C)
        if self.output_size == 1:
            return keras.ops.mean(x, axis=(1, 2), keepdims=True)  # (B, 1, 1, C)
        rows, cols = self._bins(x.shape[1]), self._bins(x.shape[2])
        area = rows.sum(axis=1)[:, None, None] * cols.sum(axis=1)[None, :, None]  # (out, out, 1)
        rows, cols, area = (keras.ops.convert_to_tensor(a, dtype=x.dtype) for a in (rows, cols, area))
        sums = keras.ops.einsum("ih,jw,bhwc->bijc", rows, cols, x)  # (B, out, out, C)
        return sums / area


def pooling(kind: str, dtype):
    """2x2, stride-2 pooling over (B, H, W, C). A layer, so it needs the dtype: a Keras layer
    left at the default float32 policy silently casts float64 inputs down."""
    layer = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}[kind]
    return layer(pool_size=2, strides=2, dtype=dtype)
