"""DenseNet (Huang et al. 2016), torchvision's DenseNet-BC, channels-first."""
import torch
from torch import nn

from pytorch_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, MaxPool2d


def norm(spec, channels, dtype):
    return BatchNorm(channels, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to bn_size * growth, BN-ReLU-3x3 conv to growth new channels."""

    def __init__(self, spec, in_channels, dtype):
        super().__init__()
        inner = spec.bn_size * spec.growth_rate
        self.norm1 = norm(spec, in_channels, dtype)
        self.conv1 = Conv2d(in_channels, inner, 1, bias=False, dtype=dtype)
        self.norm2 = norm(spec, inner, dtype)
        self.conv2 = Conv2d(inner, spec.growth_rate, 3, padding=1, bias=False, dtype=dtype)
        self.dropout = nn.Dropout(spec.drop_rate)

    def forward(self, features):  # every earlier map, each (B, C_i, H, W)
        x = torch.cat(features, 1)  # (B, sum C_i, H, W), oldest first
        x = self.conv1(torch.relu(self.norm1(x)))  # (B, bn_size * growth, H, W)
        x = self.conv2(torch.relu(self.norm2(x)))  # (B, growth, H, W)
        return self.dropout(x)


class DenseBlock(nn.Module):
    def __init__(self, spec, num_layers, in_channels, dtype):
        super().__init__()
        self.size = num_layers
        for i in range(num_layers):
            setattr(self, f"denselayer{i + 1}", DenseLayer(spec, in_channels + i * spec.growth_rate, dtype))

    def forward(self, x):  # (B, C, H, W)
        features = [x]
        for i in range(self.size):
            features.append(getattr(self, f"denselayer{i + 1}")(features))
        return torch.cat(features, 1)  # (B, C + num_layers * growth, H, W)


class Transition(nn.Module):
    """BN-ReLU-1x1 conv halving the channels, 2x2 average pool halving the size."""

    def __init__(self, spec, in_channels, dtype):
        super().__init__()
        self.norm = norm(spec, in_channels, dtype)
        self.conv = Conv2d(in_channels, in_channels // 2, 1, bias=False, dtype=dtype)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x):  # (B, C, H, W)
        return self.pool(self.conv(torch.relu(self.norm(x))))  # (B, C / 2, H / 2, W / 2)


class Features(nn.Module):
    """torchvision's `features`: stem, dense blocks joined by transitions, a final BN."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.size = len(spec.block_config)
        self.conv0 = Conv2d(spec.in_channels, spec.num_init_features, 7, stride=2, padding=3, bias=False,
                            dtype=dtype)
        self.norm0 = norm(spec, spec.num_init_features, dtype)
        self.pool0 = MaxPool2d(3, 2, padding=1)
        channels = spec.num_init_features
        for b, num_layers in enumerate(spec.block_config, start=1):
            setattr(self, f"denseblock{b}", DenseBlock(spec, num_layers, channels, dtype))
            channels += num_layers * spec.growth_rate
            if b < self.size:
                setattr(self, f"transition{b}", Transition(spec, channels, dtype))
                channels //= 2
        self.norm5 = norm(spec, channels, dtype)

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.pool0(torch.relu(self.norm0(self.conv0(x))))  # (B, 64, 56, 56)
        for b in range(1, self.size + 1):
            x = getattr(self, f"denseblock{b}")(x)
            if b < self.size:
                x = getattr(self, f"transition{b}")(x)
        return self.norm5(x)  # (B, 1024, 7, 7) for DenseNet-121


class DenseNet(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.features = Features(spec, dtype)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(spec.num_features, spec.num_classes, dtype=dtype)

    def forward(self, x):  # (B, 3, 224, 224)
        x = torch.relu(self.features(x))  # (B, 1024, 7, 7)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1024)
        return {"logits": self.classifier(x)}  # (B, num_classes)
