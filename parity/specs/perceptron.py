"""Rosenblatt's perceptron: one neuron, z = w·x + b, output step(z) or sigmoid(z)."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.base import Spec


@dataclasses.dataclass(frozen=True)
class PerceptronSpec(Spec):
    architecture = "perceptron"
    presets = {"tiny": {"in_features": 4}, "perceptron": {"in_features": 2}}
    reference_preset = "perceptron"
    input_kind = "features"
    loss = "binary_cross_entropy"  # on the pre-activation z: the step has no gradient
    output_names = ("logits", "output")
    classifier = "fc"

    in_features: int = 2
    output: str = "step"  # "step" (Rosenblatt, 1 if z > 0) or "sigmoid" (logistic neuron)

    def __post_init__(self):
        self._positive_int("in_features")
        self._choice("output", ("step", "sigmoid"))

    @property
    def input_shape(self):
        return (self.in_features,)

    def layout(self):
        return params.linear("fc", self.in_features, 1)
