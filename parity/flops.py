"""Analytic FLOP counts from the spec, by the profilers' convention: 2 FLOPs per multiply-add of
every matmul and convolution (elementwise work — bias adds, activations, normalisation,
pooling — is not counted; it is memory-bound and profilers leave it out too).

A training step is the forward pass plus the backward pass: every layer computes its weight
gradient (as many FLOPs as its forward) and, except the first layer, its input gradient
(the same again); the first layer's input needs no gradient.
`tests/test_flops.py` checks these against hand counts and against torch's FlopCounterMode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from parity.specs import Spec

# Weight kinds that are matmuls or convolutions: does the count scale with output pixels?
_PER_PIXEL = {"linear": False, "flatten_linear": False, "conv2d": True, "depthwise_conv2d": True}


@dataclass(frozen=True)
class LayerFlops:
    name: str  # canonical module path
    macs: int  # multiply-adds per example, forward


def layer_flops(spec: Spec) -> list[LayerFlops]:
    """Every matmul and convolution in execution order (the first one sees the raw input), from
    the layout: a Linear does out x in MACs per example, a convolution out x in/groups x k x k
    per output pixel (the layout records each conv's output size)."""
    layers = []
    for name, param in spec.layout().items():
        if not name.endswith(".weight") or param.kind not in _PER_PIXEL:
            continue
        pixels = param.meta["output_size"] ** 2 if _PER_PIXEL[param.kind] else 1
        layers.append(LayerFlops(name.removesuffix(".weight"), math.prod(param.shape) * pixels))
    return layers


def forward_flops(spec: Spec, batch: int = 1) -> int:
    return 2 * batch * sum(layer.macs for layer in layer_flops(spec))


def train_step_flops(spec: Spec, batch: int = 1) -> int:
    layers = layer_flops(spec)
    weight_grads = sum(layer.macs for layer in layers)
    input_grads = sum(layer.macs for layer in layers[1:])
    return forward_flops(spec, batch) + 2 * batch * (weight_grads + input_grads)
