"""ResNet (He et al. 2015), torchvision's v1.5 (stride on the bottleneck's 3x3), channels-first.

ReLUs and the residual add work in place, as torchvision's do: a batch norm's output is not needed
by its backward pass, and eager training was 6-9 % slower allocating a new tensor each time."""
import torch
from torch import nn

from pytorch_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d, Sequential


def norm(spec, channels, dtype):
    return BatchNorm(channels, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the first carries the stride."""

    def __init__(self, spec, inplanes, planes, stride, dtype):
        super().__init__()
        self.conv1 = Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn1 = norm(spec, planes, dtype)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False, dtype=dtype)
        self.bn2 = norm(spec, planes, dtype)
        self.downsample = downsample(spec, inplanes, planes, stride, dtype)

    def forward(self, x):  # (B, inplanes, H, W)
        identity = x if self.downsample is None else self.downsample(x)  # (B, planes, H/s, W/s)
        out = torch.relu_(self.bn1(self.conv1(x)))  # (B, planes, H/s, W/s)
        out = self.bn2(self.conv2(out))
        return torch.relu_(out.add_(identity))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (with the stride), 1x1 expand by 4."""

    def __init__(self, spec, inplanes, planes, stride, dtype):
        super().__init__()
        width = spec.width(planes)
        self.conv1 = Conv2d(inplanes, width, 1, bias=False, dtype=dtype)
        self.bn1 = norm(spec, width, dtype)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn2 = norm(spec, width, dtype)
        self.conv3 = Conv2d(width, planes * spec.expansion, 1, bias=False, dtype=dtype)
        self.bn3 = norm(spec, planes * spec.expansion, dtype)
        self.downsample = downsample(spec, inplanes, planes, stride, dtype)

    def forward(self, x):  # (B, inplanes, H, W)
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4 planes, H/s, W/s)
        out = torch.relu_(self.bn1(self.conv1(x)))  # (B, width, H, W)
        out = torch.relu_(self.bn2(self.conv2(out)))  # (B, width, H/s, W/s)
        out = self.bn3(self.conv3(out))  # (B, 4 planes, H/s, W/s)
        return torch.relu_(out.add_(identity))


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def downsample(spec, inplanes, planes, stride, dtype):
    """The projection shortcut (1x1 conv + BN) where the block changes shape, else None."""
    out = planes * spec.expansion
    if stride == 1 and inplanes == out:
        return None
    return Sequential(Conv2d(inplanes, out, 1, stride=stride, bias=False, dtype=dtype), norm(spec, out, dtype))


class ResNet(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        stem = spec.planes[0]
        self.conv1 = Conv2d(spec.in_channels, stem, 7, stride=2, padding=3, bias=False, dtype=dtype)
        self.bn1 = norm(spec, stem, dtype)
        self.maxpool = MaxPool2d(3, 2, padding=1)
        inplanes = stem
        for stage, (planes, blocks) in enumerate(zip(spec.planes, spec.layers)):
            layer = []
            for index in range(blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                layer.append(BLOCKS[spec.block](spec, inplanes, planes, stride, dtype))
                inplanes = planes * spec.expansion
            setattr(self, f"layer{stage + 1}", Sequential(*layer))
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, spec.num_classes, dtype=dtype)

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.maxpool(torch.relu_(self.bn1(self.conv1(x))))  # (B, 64, 56, 56)
        x = self.layer1(x)  # (B, 64 e, 56, 56), e = 1 (basic) or 4 (bottleneck)
        x = self.layer2(x)  # (B, 128 e, 28, 28)
        x = self.layer3(x)  # (B, 256 e, 14, 14)
        x = self.layer4(x)  # (B, 512 e, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512 e)
        return {"logits": self.fc(x)}  # (B, num_classes)
