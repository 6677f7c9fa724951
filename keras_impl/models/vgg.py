"""VGG (Simonyan & Zisserman 2014), configurations A and D, with or without batch norm, channels-last."""
import keras

from keras_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d, Sequential


def make_layers(spec, dtype):
    """torchvision's `make_layers`: 3x3 conv (+ batch norm), ReLU per width; 2x2 max-pool per "M"."""
    layers, channels = [], spec.in_channels
    for value in spec.cfg:
        if value == "M":
            layers.append(MaxPool2d(2, 2, dtype=dtype))
            continue
        layers.append(Conv2d(channels, value, 3, padding=1, dtype=dtype))
        if spec.batch_norm:
            layers.append(BatchNorm(eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype))
        layers.append(keras.layers.ReLU(dtype=dtype))
        channels = value
    return Sequential(*layers, dtype=dtype)


class VGG(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.features = make_layers(spec, dtype)
        self.avgpool = AdaptiveAvgPool2d(spec.avgpool_size, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.classifier = Sequential(
            keras.layers.Dense(spec.hidden, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            keras.layers.Dropout(spec.dropout, dtype=dtype),
            keras.layers.Dense(spec.hidden, dtype=dtype), keras.layers.ReLU(dtype=dtype),
            keras.layers.Dropout(spec.dropout, dtype=dtype),
            keras.layers.Dense(spec.num_classes, dtype=dtype),
            dtype=dtype,
        )

    def call(self, x, training=False):  # (B, 224, 224, 3)
        x = self.features(x, training=training)  # (B, 7, 7, 512)
        x = self.avgpool(x)  # (B, 7, 7, 512): the identity at 224x224
        x = self.flatten(x)  # (B, 25088), in H, W, C order: classifier.0's rows are permuted to match
        return {"logits": self.classifier(x, training=training)}  # (B, num_classes)
