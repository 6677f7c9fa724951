"""Layers shared by the models, channels-last."""
import keras


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
        if not training:
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


def pooling(kind: str, dtype):
    """2x2, stride-2 pooling over (B, H, W, C). A layer, so it needs the dtype: a Keras layer
    left at the default float32 policy silently casts float64 inputs down."""
    layer = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}[kind]
    return layer(pool_size=2, strides=2, dtype=dtype)
