"""DenseNet (Huang et al. 2016), torchvision's DenseNet-BC, channels-last."""
import keras

from keras_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d


def norm(spec, channels, dtype):
    return BatchNorm(eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)


class DenseLayer(keras.layers.Layer):
    """BN-ReLU-1x1 conv to bn_size * growth, BN-ReLU-3x3 conv to growth new channels."""

    def __init__(self, spec, in_channels, dtype):
        super().__init__(dtype=dtype)
        inner = spec.bn_size * spec.growth_rate
        self.norm1 = norm(spec, in_channels, dtype)
        self.conv1 = Conv2d(in_channels, inner, 1, bias=False, dtype=dtype)
        self.norm2 = norm(spec, inner, dtype)
        self.conv2 = Conv2d(inner, spec.growth_rate, 3, padding=1, bias=False, dtype=dtype)
        self.dropout = keras.layers.Dropout(spec.drop_rate, dtype=dtype)

    def call(self, features, training=False):  # every earlier map, each (B, H, W, C_i)
        x = keras.ops.concatenate(features, axis=-1)  # (B, H, W, sum C_i), oldest first, as torch's channels
        x = self.conv1(keras.ops.relu(self.norm1(x, training=training)))  # (B, H, W, bn_size * growth)
        x = self.conv2(keras.ops.relu(self.norm2(x, training=training)))  # (B, H, W, growth)
        return self.dropout(x, training=training)


class DenseBlock(keras.layers.Layer):
    def __init__(self, spec, num_layers, in_channels, dtype):
        super().__init__(dtype=dtype)
        self.size = num_layers
        for i in range(num_layers):
            setattr(self, f"denselayer{i + 1}", DenseLayer(spec, in_channels + i * spec.growth_rate, dtype))

    def call(self, x, training=False):  # (B, H, W, C)
        features = [x]
        for i in range(self.size):
            features.append(getattr(self, f"denselayer{i + 1}")(features, training=training))
        return keras.ops.concatenate(features, axis=-1)  # (B, H, W, C + num_layers * growth)


class Transition(keras.layers.Layer):
    """BN-ReLU-1x1 conv halving the channels, 2x2 average pool halving the size."""

    def __init__(self, spec, in_channels, dtype):
        super().__init__(dtype=dtype)
        self.norm = norm(spec, in_channels, dtype)
        self.conv = Conv2d(in_channels, in_channels // 2, 1, bias=False, dtype=dtype)
        self.pool = keras.layers.AveragePooling2D(2, 2, dtype=dtype)

    def call(self, x, training=False):  # (B, H, W, C)
        return self.pool(self.conv(keras.ops.relu(self.norm(x, training=training))))  # (B, H / 2, W / 2, C / 2)


class Features(keras.layers.Layer):
    """torchvision's `features`: stem, dense blocks joined by transitions, a final BN."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.size = len(spec.block_config)
        self.conv0 = Conv2d(spec.in_channels, spec.num_init_features, 7, stride=2, padding=3, bias=False,
                            dtype=dtype)
        self.norm0 = norm(spec, spec.num_init_features, dtype)
        self.pool0 = MaxPool2d(3, 2, padding=1, dtype=dtype)
        channels = spec.num_init_features
        for b, num_layers in enumerate(spec.block_config, start=1):
            setattr(self, f"denseblock{b}", DenseBlock(spec, num_layers, channels, dtype))
            channels += num_layers * spec.growth_rate
            if b < self.size:
                setattr(self, f"transition{b}", Transition(spec, channels, dtype))
                channels //= 2
        self.norm5 = norm(spec, channels, dtype)

    def call(self, x, training=False):  # (B, 224, 224, 3)
        x = self.pool0(keras.ops.relu(self.norm0(self.conv0(x), training=training)))  # (B, 56, 56, 64)
        for b in range(1, self.size + 1):
            x = getattr(self, f"denseblock{b}")(x, training=training)
            if b < self.size:
                x = getattr(self, f"transition{b}")(x, training=training)
        return self.norm5(x, training=training)  # (B, 7, 7, 1024) for DenseNet-121


class DenseNet(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.features = Features(spec, dtype)
        self.avgpool = AdaptiveAvgPool2d(1, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.classifier = keras.layers.Dense(spec.num_classes, dtype=dtype)

    def call(self, x, training=False):  # (B, 224, 224, 3)
        x = keras.ops.relu(self.features(x, training=training))  # (B, 7, 7, 1024)
        x = self.flatten(self.avgpool(x))  # (B, 1024)
        return {"logits": self.classifier(x)}  # (B, num_classes)
