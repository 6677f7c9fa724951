"""Rosenblatt's perceptron: z = w·x + b, output step(z) or sigmoid(z)."""
import keras

from keras_impl.activations import activation


class Perceptron(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.fc = keras.layers.Dense(1, dtype=dtype)
        self.output_fn = activation(spec.output)

    def call(self, x):  # (B, F)
        z = self.fc(x)  # (B, 1)
        return {"logits": z, "output": self.output_fn(z)}
