"""EfficientNet (Tan & Le 2019), torchvision's B0-B7, channels-first."""
import torch
from torch import nn

from pytorch_impl.layers import AdaptiveAvgPool2d, BatchNorm, Conv2d, DepthwiseConv2d, Sequential


class ConvNormActivation(Sequential):
    """torchvision's Conv2dNormActivation: conv (symmetric "same" padding), BN, SiLU or nothing."""

    def __init__(self, spec, in_channels, out_channels, kernel_size, stride=1, *, depthwise=False,
                 activation=True, dtype):
        padding = (kernel_size - 1) // 2
        conv = (DepthwiseConv2d(in_channels, kernel_size, stride, padding, bias=False, dtype=dtype) if depthwise
                else Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False, dtype=dtype))
        norm = BatchNorm(out_channels, eps=spec.bn_eps, momentum=spec.bn_momentum, dtype=dtype)
        super().__init__(conv, norm, *([nn.SiLU()] if activation else []))


class SqueezeExcitation(nn.Module):
    """Channel attention: global average -> 1x1 conv down -> SiLU -> 1x1 conv up -> sigmoid gate."""

    def __init__(self, channels, squeeze, dtype):
        super().__init__()
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(channels, squeeze, 1, dtype=dtype)
        self.fc2 = Conv2d(squeeze, channels, 1, dtype=dtype)

    def forward(self, x):  # (B, C, H, W)
        scale = self.fc2(nn.functional.silu(self.fc1(self.avgpool(x))))  # (B, C, 1, 1)
        return torch.sigmoid(scale) * x


class StochasticDepth(nn.Module):
    """Training only: drop the whole residual branch of each example with probability p and scale
    survivors by 1 / (1 - p) (torchvision's mode="row")."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):  # (B, C, H, W)
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        keep = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(survival)
        return x * keep / survival


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project."""

    def __init__(self, spec, block, dtype):
        super().__init__()
        self.residual = block.residual
        layers = []
        if block.expanded != block.in_channels:
            layers.append(ConvNormActivation(spec, block.in_channels, block.expanded, 1, dtype=dtype))
        layers.append(ConvNormActivation(spec, block.expanded, block.expanded, block.kernel, block.stride,
                                         depthwise=True, dtype=dtype))
        layers.append(SqueezeExcitation(block.expanded, block.squeeze, dtype))
        layers.append(ConvNormActivation(spec, block.expanded, block.out_channels, 1, activation=False,
                                         dtype=dtype))
        self.block = Sequential(*layers)
        self.stochastic_depth = StochasticDepth(block.stochastic_depth_prob)

    def forward(self, x):  # (B, in, H, W)
        out = self.block(x)  # (B, out, H/s, W/s)
        return self.stochastic_depth(out) + x if self.residual else out


class EfficientNet(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        stages = spec.stages()
        self.features = Sequential(
            ConvNormActivation(spec, spec.in_channels, spec.stem_channels, 3, 2, dtype=dtype),
            *(Sequential(*(MBConv(spec, block, dtype) for block in stage)) for stage in stages),
            ConvNormActivation(spec, stages[-1][-1].out_channels, spec.head_channels, 1, dtype=dtype),
        )
        self.avgpool = AdaptiveAvgPool2d(1)
        self.classifier = Sequential(nn.Dropout(spec.dropout),
                                     nn.Linear(spec.head_channels, spec.num_classes, dtype=dtype))

    def forward(self, x):  # (B, 3, 224, 224)
        x = self.features(x)  # (B, 1280, 7, 7) for B0
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1280)
        return {"logits": self.classifier(x)}  # (B, num_classes)
