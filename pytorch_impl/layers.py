"""Layers shared by the models. torch.nn's own semantics are the canonical ones."""
from functools import partial

import torch.nn.functional as F
from torch import nn


class BatchNorm(nn.BatchNorm1d):
    """torch.nn batch norm over axis 1, for (B, C) features and (B, C, H, W) maps.

    This is the reference the Keras and Flax `BatchNorm` classes reproduce: normalise with the
    biased batch variance, update the running variance with the *unbiased* one, count batches.
    `momentum` is torch's convention: running = (1 - momentum) * running + momentum * batch.
    """

    def __init__(self, num_features: int, *, eps: float, momentum: float, dtype):
        super().__init__(num_features, eps=eps, momentum=momentum, dtype=dtype)

    def _check_input_dim(self, x):
        if x.dim() not in (2, 4):
            raise ValueError(f"BatchNorm: expected (B, C) or (B, C, H, W) input, got shape {tuple(x.shape)}")


class Sequential(nn.Sequential):
    """Children named by position ("features.0.weight"): torchvision's container."""

    def __init__(self, *layers):
        super().__init__(*layers)


class Conv2d(nn.Conv2d):
    """A 2D convolution with torch's symmetric zero padding (the canonical one)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, *, dtype):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias, dtype=dtype)


class DepthwiseConv2d(nn.Conv2d):
    """One kxk filter per channel: a Conv2d with groups = channels."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, *, dtype):
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels, bias=bias,
                         dtype=dtype)


class MaxPool2d(nn.MaxPool2d):
    """Max pooling; torch pads with -inf, so padding never wins the max."""

    def __init__(self, kernel_size: int, stride: int, padding: int = 0):
        super().__init__(kernel_size, stride, padding)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Average over `output_size` x `output_size` bins; bin i spans [floor(i*H/out), ceil((i+1)*H/out)),
    so bins overlap when the output does not divide the input."""

    def __init__(self, output_size: int):
        super().__init__(output_size)


def pooling(kind: str):
    """2x2, stride-2 pooling over (B, C, H, W)."""
    return {"avg": partial(F.avg_pool2d, kernel_size=2, stride=2),
            "max": partial(F.max_pool2d, kernel_size=2, stride=2)}[kind]
