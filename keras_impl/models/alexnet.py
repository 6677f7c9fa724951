"""AlexNet (Krizhevsky et al. 2012), torchvision's variant, channels-last."""
import keras

from keras_impl.layers import AdaptiveAvgPool2d, Conv2d, MaxPool2d, Sequential


class AlexNet(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        c1, c2, c3, c4, c5 = spec.widths
        self.features = Sequential(
            Conv2d(spec.in_channels, c1, 11, stride=4, padding=2, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            MaxPool2d(3, 2, dtype=dtype),
            Conv2d(c1, c2, 5, padding=2, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            MaxPool2d(3, 2, dtype=dtype),
            Conv2d(c2, c3, 3, padding=1, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            Conv2d(c3, c4, 3, padding=1, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            Conv2d(c4, c5, 3, padding=1, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            MaxPool2d(3, 2, dtype=dtype),
            dtype=dtype,
        )
        self.avgpool = AdaptiveAvgPool2d(spec.avgpool_size, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.classifier = Sequential(
            keras.layers.Dropout(spec.dropout, dtype=dtype),
            keras.layers.Dense(spec.hidden, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            keras.layers.Dropout(spec.dropout, dtype=dtype),
            keras.layers.Dense(spec.hidden, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            keras.layers.Dense(spec.num_classes, dtype=dtype),
            dtype=dtype,
        )

    def call(self, x, training=False):  # (B, 224, 224, 3)
        x = self.features(x, training=training)  # (B, 6, 6, 256)
        x = self.avgpool(x)  # (B, 6, 6, 256): the identity at 224x224
        x = self.flatten(x)  # (B, 9216), in H, W, C order: classifier.1's rows are permuted to match
        return {"logits": self.classifier(x, training=training)}  # (B, num_classes)
