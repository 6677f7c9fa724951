"""Multi-layer perceptron: [Dense -> (BatchNorm) -> activation -> Dropout] * depth -> Dense."""
import keras

from keras_impl.activations import activation
from keras_impl.layers import BatchNorm


class MLPBlock(keras.layers.Layer):
    def __init__(self, in_features, out_features, spec, dtype):
        super().__init__(dtype=dtype)
        self.fc = keras.layers.Dense(out_features, dtype=dtype)
        self.bn = (BatchNorm(eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)
                   if spec.batch_norm else None)
        self.act = activation(spec.activation, spec.negative_slope)
        self.drop = keras.layers.Dropout(spec.dropout, dtype=dtype)

    def call(self, x, training=False):  # (B, in)
        x = self.fc(x)  # (B, out)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.drop(self.act(x), training=training)


class MLP(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        widths = (spec.in_features, *spec.hidden_sizes)
        self.blocks = [MLPBlock(i, o, spec, dtype) for i, o in zip(widths, widths[1:])]
        self.head = keras.layers.Dense(spec.num_classes, dtype=dtype)

    def call(self, x, training=False):  # (B, in_features)
        for block in self.blocks:
            x = block(x, training=training)  # (B, hidden)
        return {"logits": self.head(x)}  # (B, num_classes)
