"""LeNet-5 (LeCun et al. 1998), channels-last."""
import keras

from keras_impl.activations import activation
from keras_impl.layers import pooling


class LeNet5(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        # Keras Conv2D takes only "valid"/"same"; explicit zero padding says what torch's padding=2 does.
        self.pad1 = keras.layers.ZeroPadding2D(spec.conv1_padding, dtype=dtype)
        self.conv1 = keras.layers.Conv2D(6, 5, dtype=dtype)
        self.conv2 = keras.layers.Conv2D(16, 5, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.fc1 = keras.layers.Dense(120, dtype=dtype)
        self.fc2 = keras.layers.Dense(84, dtype=dtype)
        self.fc3 = keras.layers.Dense(spec.num_classes, dtype=dtype)
        self.act = activation(spec.activation, spec.negative_slope)
        self.pool = pooling(spec.pooling, dtype)

    def call(self, x):  # (B, 32, 32, C), or (B, 28, 28, C) padded before conv1
        x = self.pool(self.act(self.conv1(self.pad1(x))))  # (B, 14, 14, 6)
        x = self.pool(self.act(self.conv2(x)))  # (B, 5, 5, 16)
        x = self.flatten(x)  # (B, 400), in H, W, C order: fc1's rows are permuted to match
        x = self.act(self.fc1(x))  # (B, 120)
        x = self.act(self.fc2(x))  # (B, 84)
        return {"logits": self.fc3(x)}  # (B, num_classes)
