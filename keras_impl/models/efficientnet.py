"""EfficientNet (Tan & Le 2019), torchvision's B0-B7, channels-last."""
import keras

from keras_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, DepthwiseConv2d, Sequential


class ConvNormActivation(Sequential):
    """torchvision's Conv2dNormActivation: conv (symmetric "same" padding), BN, SiLU or nothing."""

    def __init__(self, spec, in_channels, out_channels, kernel_size, stride=1, *, depthwise=False,
                 activation=True, dtype):
        padding = (kernel_size - 1) // 2
        conv = (DepthwiseConv2d(in_channels, kernel_size, stride, padding, bias=False, dtype=dtype) if depthwise
                else Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype))
        norm = BatchNorm(eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)
        super().__init__(conv, norm, *([keras.layers.Activation("silu", dtype=dtype)] if activation else []),
                         dtype=dtype)


class SqueezeExcitation(keras.layers.Layer):
    """Channel attention: global average -> 1x1 conv down -> SiLU -> 1x1 conv up -> sigmoid gate."""

    def __init__(self, channels, squeeze, dtype):
        super().__init__(dtype=dtype)
        self.avgpool = AdaptiveAvgPool2d(1, dtype=dtype)
        self.fc1 = Conv2d(channels, squeeze, 1, dtype=dtype)
        self.fc2 = Conv2d(squeeze, channels, 1, dtype=dtype)

    def call(self, x):  # (B, H, W, C)
        scale = self.fc2(keras.ops.silu(self.fc1(self.avgpool(x))))  # (B, 1, 1, C)
        return keras.ops.sigmoid(scale) * x


class StochasticDepth(keras.layers.Dropout):
    """Training only: drop the whole residual branch of each example with probability p and scale
    survivors by 1 / (1 - p) (torchvision's mode="row"). That is Keras' Dropout with one draw per
    example (noise shape (B, 1, 1, 1)); it is the identity in inference and at p = 0."""

    def __init__(self, p, *, dtype):
        super().__init__(p, noise_shape=(None, 1, 1, 1), dtype=dtype)


class MBConv(keras.layers.Layer):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project."""

    def __init__(self, spec, block, dtype):
        super().__init__(dtype=dtype)
        self.residual = block.residual
        layers = []
        if block.expanded != block.in_channels:
            layers.append(ConvNormActivation(spec, block.in_channels, block.expanded, 1, dtype=dtype))
        layers.append(ConvNormActivation(spec, block.expanded, block.expanded, block.kernel, block.stride,
                                         depthwise=True, dtype=dtype))
        layers.append(SqueezeExcitation(block.expanded, block.squeeze, dtype))
        layers.append(ConvNormActivation(spec, block.expanded, block.out_channels, 1, activation=False,
                                         dtype=dtype))
        self.block = Sequential(*layers, dtype=dtype)
        self.stochastic_depth = StochasticDepth(block.stochastic_depth_prob, dtype=dtype)

    def call(self, x, training=False):  # (B, H, W, in)
        out = self.block(x, training=training)  # (B, H/s, W/s, out)
        return self.stochastic_depth(out, training=training) + x if self.residual else out


class EfficientNet(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        stages = spec.stages()
        self.features = Sequential(
            ConvNormActivation(spec, spec.in_channels, spec.stem_channels, 3, 2, dtype=dtype),
            *(Sequential(*(MBConv(spec, block, dtype) for block in stage), dtype=dtype) for stage in stages),
            ConvNormActivation(spec, stages[-1][-1].out_channels, spec.head_channels, 1, dtype=dtype),
            dtype=dtype,
        )
        self.avgpool = AdaptiveAvgPool2d(1, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.classifier = Sequential(keras.layers.Dropout(spec.dropout, dtype=dtype),
                                     keras.layers.Dense(spec.num_classes, dtype=dtype), dtype=dtype)

    def call(self, x, training=False):  # (B, 224, 224, 3)
        x = self.features(x, training=training)  # (B, 7, 7, 1280) for B0
        x = self.flatten(self.avgpool(x))  # (B, 1280)
        return {"logits": self.classifier(x, training=training)}  # (B, num_classes)
