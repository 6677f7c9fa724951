"""ResNet (He et al. 2015), torchvision's v1.5 (stride on the bottleneck's 3x3), channels-last."""
import keras

from keras_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d, Sequential


def norm(spec, channels, dtype):
    return BatchNorm(eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)


class BasicBlock(keras.layers.Layer):
    """Two 3x3 convs; the first carries the stride."""

    def __init__(self, spec, inplanes, planes, stride, dtype):
        super().__init__(dtype=dtype)
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn1 = norm(spec, planes, dtype)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False, dtype=dtype)
        self.bn2 = norm(spec, planes, dtype)
        self.downsample = downsample(spec, inplanes, planes, stride, dtype)

    def call(self, x, training=False):  # (B, H, W, inplanes)
        identity = x if self.downsample is None else self.downsample(x, training=training)  # (B, H/s, W/s, planes)
        out = keras.ops.relu(self.bn1(self.conv1(x), training=training))  # (B, H/s, W/s, planes)
        out = self.bn2(self.conv2(out), training=training)
        return keras.ops.relu(out + identity)


class Bottleneck(keras.layers.Layer):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand by 4."""

    def __init__(self, spec, inplanes, planes, stride, dtype):
        super().__init__(dtype=dtype)
        width = spec.width(planes)
        self.conv1 = Conv2d(inplanes, width, 1, bias=False, dtype=dtype)
        self.bn1 = norm(spec, width, dtype)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn2 = norm(spec, width, dtype)
        self.conv3 = Conv2d(width, planes * spec.expansion, 1, bias=False, dtype=dtype)
        self.bn3 = norm(spec, planes * spec.expansion, dtype)
        self.downsample = downsample(spec, inplanes, planes, stride, dtype)

    def call(self, x, training=False):  # (B, H, W, inplanes)
        identity = x if self.downsample is None else self.downsample(x, training=training)  # (B, H/s, W/s, 4 planes)
        out = keras.ops.relu(self.bn1(self.conv1(x), training=training))  # (B, H, W, width)
        out = keras.ops.relu(self.bn2(self.conv2(out), training=training))  # (B, H/s, W/s, width)
        out = self.bn3(self.conv3(out), training=training)  # (B, H/s, W/s, 4 planes)
        return keras.ops.relu(out + identity)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def downsample(spec, inplanes, planes, stride, dtype):
    """The projection shortcut (1x1 conv + BN) where the block changes shape, else None."""
    out = planes * spec.expansion
    if stride == 1 and inplanes == out:
        return None
    return Sequential(Conv2d(inplanes, out, 1, stride=stride, bias=False, dtype=dtype), norm(spec, out, dtype),
                      dtype=dtype)


class ResNet(keras.Model):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        stem = spec.planes[0]
        self.conv1 = Conv2d(spec.in_channels, stem, 7, stride=2, padding=3, bias=False, dtype=dtype)
        self.bn1 = norm(spec, stem, dtype)
        self.maxpool = MaxPool2d(3, 2, padding=1, dtype=dtype)
        inplanes = stem
        for stage, (planes, blocks) in enumerate(zip(spec.planes, spec.layers)):
            layer = []
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layer.append(BLOCKS[spec.block](spec, inplanes, planes, stride, dtype))
                inplanes = planes * spec.expansion
            setattr(self, f"layer{stage + 1}", Sequential(*layer, dtype=dtype))
        self.avgpool = AdaptiveAvgPool2d(1, dtype=dtype)
        self.flatten = keras.layers.Flatten(dtype=dtype)
        self.fc = keras.layers.Dense(spec.num_classes, dtype=dtype)

    def call(self, x, training=False):  # (B, 224, 224, 3)
        x = self.maxpool(keras.ops.relu(self.bn1(self.conv1(x), training=training)))  # (B, 56, 56, 64)
        x = self.layer1(x, training=training)  # (B, 56, 56, 64 e), e = 1 (basic) or 4 (bottleneck)
        x = self.layer2(x, training=training)  # (B, 28, 28, 128 e)
        x = self.layer3(x, training=training)  # (B, 14, 14, 256 e)
        x = self.layer4(x, training=training)  # (B, 7, 7, 512 e)
        x = self.flatten(self.avgpool(x))  # (B, 512 e)
        return {"logits": self.fc(x)}  # (B, num_classes)
