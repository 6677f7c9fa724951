"""Analytic FLOP counts from the spec, by the profilers' convention: 2 FLOPs per multiply-add of
every matmul and convolution (elementwise work — bias adds, activations, normalisation,
pooling — is not counted; it is memory-bound and profilers leave it out too).

A training step is the forward pass plus the backward pass: every layer computes its weight
gradient (as many FLOPs as its forward) and its input gradient (the same again), except a
layer reading the model's input (the first one, or as its layout entry says: each direction's
input weights of a recurrent layer 0), whose input needs no gradient. A recurrent weight counts once per time step; the
hidden-to-hidden one needs no input gradient at the first step (the initial state is an input).
A layer whose output the loss never reads (layout meta `off_loss_path`: BERT's pooler under a loss
on last_hidden_state) runs forward only.
Matmuls between two activations (attention scores and contexts) have no weight in the layout: a
spec lists them in `activation_matmuls()`, each with the MACs of its forward and of its input
gradients (the "weight" gradient is the other operand's, counted like a weight's).
`tests/test_flops.py` checks these against hand counts and against torch's FlopCounterMode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from parity.specs import Spec

# Weight kinds that are matmuls or convolutions: does the count scale with output pixels?
_PER_PIXEL = {"linear": False, "conv1d": False, "flatten_linear": False, "conv2d": True, "depthwise_conv2d": True}


@dataclass(frozen=True)
class LayerFlops:
    weight: str  # canonical name of the layer's weight
    macs: int  # multiply-adds per example, forward
    input_grad_macs: int  # multiply-adds per example of the gradient of the layer's input
    weight_grad_macs: int | None = None  # of its weight's gradient: None, as many as `macs`


def layer_flops(spec: Spec) -> list[LayerFlops]:
    """Every matmul and convolution in execution order (the first one sees the raw input), from
    the layout: a Linear does out x in MACs per example, a convolution out x in/groups x k x k
    per output pixel (the layout records each conv's output size), a recurrent weight out x in
    per time step (its `steps`); then the spec's `activation_matmuls()`, if it has any."""
    layers = []
    for name, param in spec.layout().items():
        if param.kind not in _PER_PIXEL:
            continue
        repeats = param.meta["output_size"] ** 2 if _PER_PIXEL[param.kind] else param.meta.get("steps", 1)
        input_grad = not param.meta.get("reads_model_input", not layers)  # by default the first layer does
        input_grad_repeats = param.meta.get("input_grad_steps", repeats) if input_grad else 0
        macs = math.prod(param.shape) * repeats
        if param.meta.get("off_loss_path"):  # the loss never reads its output (BERT's pooler): no gradients
            layers.append(LayerFlops(name, macs, 0, 0))
        else:
            layers.append(LayerFlops(name, macs, math.prod(param.shape) * input_grad_repeats))
    for name, macs, input_grad_macs in getattr(spec, "activation_matmuls", list)():
        layers.append(LayerFlops(name, macs, input_grad_macs))
    return layers


def forward_flops(spec: Spec, batch: int = 1) -> int:
    return 2 * batch * sum(layer.macs for layer in layer_flops(spec))


def train_step_flops(spec: Spec, batch: int = 1) -> int:
    layers = layer_flops(spec)
    weight_grads = sum(layer.macs if layer.weight_grad_macs is None else layer.weight_grad_macs for layer in layers)
    input_grads = sum(layer.input_grad_macs for layer in layers)
    return forward_flops(spec, batch) + 2 * batch * (weight_grads + input_grads)
