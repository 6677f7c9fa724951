"""Analytic FLOP counts from the spec, by the profilers' convention: 2 FLOPs per multiply-add of
every matmul and convolution (elementwise work — bias adds, activations, normalisation,
pooling — is not counted; it is memory-bound and profilers leave it out too).

A training step is the forward pass plus the backward pass: every layer computes its weight
gradient (as many FLOPs as its forward) and, except the first layer, its input gradient
(the same again); the first layer's input needs no gradient.
`tests/test_flops.py` checks these against hand counts and against torch's FlopCounterMode.
"""
from __future__ import annotations

from dataclasses import dataclass

from parity.errors import SpecError
from parity.specs import Spec


@dataclass(frozen=True)
class LayerFlops:
    name: str  # canonical module path
    macs: int  # multiply-adds per example, forward


def _linear_chain(prefix_widths):
    return [LayerFlops(name, fan_in * fan_out) for name, fan_in, fan_out in prefix_widths]


def _perceptron(spec):
    return _linear_chain([("fc", spec.in_features, 1)])


def _mlp(spec):
    widths = (spec.in_features, *spec.hidden_sizes)
    chain = [(f"blocks.{i}.fc", a, b) for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    return _linear_chain(chain + [("head", widths[-1], spec.num_classes)])


def _lenet5(spec):
    return [
        LayerFlops("conv1", 6 * spec.in_channels * 5 * 5 * 28 * 28),  # 28x28 output maps
        LayerFlops("conv2", 16 * 6 * 5 * 5 * 10 * 10),  # 10x10 output maps
        *_linear_chain([("fc1", 400, 120), ("fc2", 120, 84), ("fc3", 84, spec.num_classes)]),
    ]


_LAYERS = {"perceptron": _perceptron, "mlp": _mlp, "lenet5": _lenet5}


def layer_flops(spec: Spec) -> list[LayerFlops]:
    if spec.architecture not in _LAYERS:
        raise SpecError(f"no FLOP count for {spec.architecture!r}; counted: {sorted(_LAYERS)}")
    return _LAYERS[spec.architecture](spec)


def forward_flops(spec: Spec, batch: int = 1) -> int:
    return 2 * batch * sum(layer.macs for layer in layer_flops(spec))


def train_step_flops(spec: Spec, batch: int = 1) -> int:
    layers = layer_flops(spec)
    weight_grads = sum(layer.macs for layer in layers)
    input_grads = sum(layer.macs for layer in layers[1:])
    return forward_flops(spec, batch) + 2 * batch * (weight_grads + input_grads)
