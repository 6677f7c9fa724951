"""Multi-layer perceptron: [Linear -> (BatchNorm) -> activation -> (Dropout)] * depth -> Linear."""
from __future__ import annotations

import dataclasses

from parity import params
from parity.specs.base import ACTIVATIONS, Spec


@dataclasses.dataclass(frozen=True)
class MLPSpec(Spec):
    architecture = "mlp"
    presets = {
        "tiny": {"in_features": 16, "hidden_sizes": (32, 24), "num_classes": 5,
                 "activation": "gelu", "dropout": 0.0, "batch_norm": True},
        # The classic MNIST MLP (Keras mnist_mlp example): 784-512-512-10, ReLU, dropout 0.2.
        "mnist": {},
    }
    reference_preset = "mnist"
    input_kind = "features"
    loss = "cross_entropy"
    classifier = "head"
    stochastic_fields = ("dropout",)

    in_features: int = 784
    hidden_sizes: tuple[int, ...] = (512, 512)
    num_classes: int = 10
    activation: str = "relu"
    negative_slope: float = 0.01  # leaky_relu only; torch's default 0.01, Keras 3's is 0.2
    dropout: float = 0.2
    batch_norm: bool = False
    bn_eps: float = 1e-5  # torch's default; Keras' BatchNormalization default is 1e-3
    bn_momentum: float = 0.1  # torch convention: running = (1 - m) * running + m * batch

    def __post_init__(self):
        # JSON (checkpoint metadata) gives lists: store the canonical tuple.
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes) if isinstance(
            self.hidden_sizes, (list, tuple)) else self.hidden_sizes)
        self._positive_int("in_features")
        self._positive_int("num_classes")
        self._require(isinstance(self.hidden_sizes, tuple) and all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in self.hidden_sizes),
            "hidden_sizes", "a tuple of positive ints (may be empty)")
        self._choice("activation", ACTIVATIONS)
        self._require(isinstance(self.negative_slope, (int, float)) and self.negative_slope >= 0,
                      "negative_slope", "a float >= 0")
        self._probability("dropout")
        self._require(isinstance(self.batch_norm, bool), "batch_norm", "a bool")
        self._batch_norm_constants()

    @property
    def input_shape(self):
        return (self.in_features,)

    def layout(self):
        entries = {}
        width = self.in_features
        for i, hidden in enumerate(self.hidden_sizes):
            entries.update(params.linear(f"blocks.{i}.fc", width, hidden))
            if self.batch_norm:
                entries.update(params.batch_norm(f"blocks.{i}.bn", hidden))
            width = hidden
        entries.update(params.linear("head", width, self.num_classes))
        return entries
