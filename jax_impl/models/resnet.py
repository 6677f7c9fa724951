"""ResNet (He et al. 2015), torchvision's v1.5 (stride on the bottleneck's 3x3), channels-last."""
import jax
from flax import nnx

from jax_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d, Sequential


def norm(spec, channels, dtype, *, rngs: nnx.Rngs):
    return BatchNorm(channels, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
    """Two 3x3 convs; the first carries the stride."""

    def __init__(self, spec, inplanes, planes, stride, dtype, *, rngs: nnx.Rngs):
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False, dtype=dtype, rngs=rngs)
        self.bn1 = norm(spec, planes, dtype, rngs=rngs)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False, dtype=dtype, rngs=rngs)
        self.bn2 = norm(spec, planes, dtype, rngs=rngs)
        self.downsample = downsample(spec, inplanes, planes, stride, dtype, rngs=rngs)

    def __call__(self, x):  # (B, H, W, inplanes)
        identity = x if self.downsample is None else self.downsample(x)  # (B, H/s, W/s, planes)
        out = jax.nn.relu(self.bn1(self.conv1(x)))  # (B, H/s, W/s, planes)
        out = self.bn2(self.conv2(out))
        return jax.nn.relu(out + identity)


class Bottleneck(nnx.Module):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand by 4."""

    def __init__(self, spec, inplanes, planes, stride, dtype, *, rngs: nnx.Rngs):
        width = spec.width(planes)
        self.conv1 = Conv2d(inplanes, width, 1, bias=False, dtype=dtype, rngs=rngs)
        self.bn1 = norm(spec, width, dtype, rngs=rngs)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, bias=False, dtype=dtype, rngs=rngs)
        self.bn2 = norm(spec, width, dtype, rngs=rngs)
        self.conv3 = Conv2d(width, planes * spec.expansion, 1, bias=False, dtype=dtype, rngs=rngs)
        self.bn3 = norm(spec, planes * spec.expansion, dtype, rngs=rngs)
        self.downsample = downsample(spec, inplanes, planes, stride, dtype, rngs=rngs)

    def __call__(self, x):  # (B, H, W, inplanes)
        identity = x if self.downsample is None else self.downsample(x)  # (B, H/s, W/s, 4 planes)
        out = jax.nn.relu(self.bn1(self.conv1(x)))  # (B, H, W, width)
        out = jax.nn.relu(self.bn2(self.conv2(out)))  # (B, H/s, W/s, width)
        out = self.bn3(self.conv3(out))  # (B, H/s, W/s, 4 planes)
        return jax.nn.relu(out + identity)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def downsample(spec, inplanes, planes, stride, dtype, *, rngs: nnx.Rngs):
    """The projection shortcut (1x1 conv + BN) where the block changes shape, else None."""
    out = planes * spec.expansion
    if stride == 1 and inplanes == out:
        return None
    return Sequential(Conv2d(inplanes, out, 1, stride=stride, bias=False, dtype=dtype, rngs=rngs),
                      norm(spec, out, dtype, rngs=rngs))


class ResNet(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        stem = spec.planes[0]
        self.conv1 = Conv2d(spec.in_channels, stem, 7, stride=2, padding=3, bias=False, dtype=dtype, rngs=rngs)
        self.bn1 = norm(spec, stem, dtype, rngs=rngs)
        self.maxpool = MaxPool2d(3, 2, padding=1)
        inplanes = stem
        for stage, (planes, blocks) in enumerate(zip(spec.planes, spec.layers)):
            layer = []
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layer.append(BLOCKS[spec.block](spec, inplanes, planes, stride, dtype, rngs=rngs))
                inplanes = planes * spec.expansion
            setattr(self, f"layer{stage + 1}", Sequential(*layer))
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc = nnx.Linear(inplanes, spec.num_classes, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, x):  # (B, 224, 224, 3)
        x = self.maxpool(jax.nn.relu(self.bn1(self.conv1(x))))  # (B, 56, 56, 64)
        x = self.layer1(x)  # (B, 56, 56, 64 e), e = 1 (basic) or 4 (bottleneck)
        x = self.layer2(x)  # (B, 28, 28, 128 e)
        x = self.layer3(x)  # (B, 14, 14, 256 e)
        x = self.layer4(x)  # (B, 7, 7, 512 e)
        x = self.avgpool(x).reshape(x.shape[0], -1)  # (B, 512 e)
        return {"logits": self.fc(x)}  # (B, num_classes)
