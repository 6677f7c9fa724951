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


def pooling(kind: str):
    """2x2, stride-2 pooling over (B, C, H, W)."""
    return {"avg": partial(F.avg_pool2d, kernel_size=2, stride=2),
            "max": partial(F.max_pool2d, kernel_size=2, stride=2)}[kind]
