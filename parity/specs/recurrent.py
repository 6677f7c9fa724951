"""Recurrent layers with torch.nn.RNN / LSTM / GRU semantics, names and state dicts.

One spec per layer kind; the fields are torch.nn's constructor arguments. The canonical state
is exactly the torch.nn module's state dict (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
`bias_hh_l0`, `..._reverse` for the backward direction), so a torch.nn.LSTM's state loads
unchanged. Gates are stacked in torch's order: RNN (1 gate), LSTM i, f, g, o (4), GRU r, z, n (3).

Inputs are named (`parity.forward(..., {"sequence": x, "lengths": ..., "h_0": ..., "c_0": ...})`):
`sequence` (B, T, input_size) batch-first; optional `lengths` (B,) int, steps past an
example's length are padding that must not change anything (torch's pack_padded_sequence);
optional initial states `h_0` (and `c_0`) of shape (num_layers * directions, B, hidden_size).
Outputs are torch.nn's: `output` (B, T, directions * hidden_size), zero at padded steps, and
the final states `h_n` (and `c_n`) (num_layers * directions, B, hidden_size).
"""
from __future__ import annotations

import dataclasses

from parity.params import Param
from parity.specs.base import Spec

# Tiny for tests; the reference size is the medium PTB language model of Zaremba et al. (2014):
# 2 layers of 650 units over 35-step BPTT windows.
_PRESETS = {
    "tiny": {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True, "seq_len": 5},
    "medium": {},
}


@dataclasses.dataclass(frozen=True)
class RecurrentSpec(Spec):
    presets = _PRESETS
    reference_preset = "medium"
    input_kind = "sequence"
    optional_inputs = ("lengths", "h_0")
    output_names = ("output", "h_n")
    loss = "mse"  # regression of `output` on a target sequence: the gradient reaches every weight
    loss_output = "output"
    stochastic_fields = ("dropout",)
    classifier = ""  # no head: a bare recurrent layer
    family = "sequence"
    num_gates = 1

    input_size: int = 650
    hidden_size: int = 650
    num_layers: int = 2
    bias: bool = True
    batch_first: bool = True
    dropout: float = 0.0  # on the outputs of every layer but the last, in training (torch.nn's `dropout`)
    bidirectional: bool = False
    seq_len: int = 35  # example length for checks and benchmarks; the model takes any length

    def __post_init__(self):
        self._positive_int("input_size")
        self._positive_int("hidden_size")
        self._positive_int("num_layers")
        self._positive_int("seq_len")
        self._require(isinstance(self.bias, bool), "bias", "a bool")
        self._require(self.batch_first is True, "batch_first",
                      "True (inputs are (B, T, features) in every framework; transpose time-major data first)")
        self._probability("dropout")
        self._require(isinstance(self.bidirectional, bool), "bidirectional", "a bool")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def input_shape(self):
        return (self.seq_len, self.input_size)

    @property
    def state_shape(self) -> tuple[int, int]:
        """h_0/h_n (and c_0/c_n) per example: (num_layers * directions, hidden_size); the batch
        axis sits between the two, as in torch.nn."""
        return (self.num_layers * self.directions, self.hidden_size)

    def layout(self):
        """torch.nn's names and order: per layer, the forward then the reverse direction, each
        weight_ih, weight_hh, bias_ih, bias_hh. Every tensor starts uniform in +-1/sqrt(hidden)."""
        gated = self.num_gates * self.hidden_size
        entries = {}
        for layer in range(self.num_layers):
            in_features = self.input_size if layer == 0 else self.hidden_size * self.directions
            for suffix in ("", "_reverse")[:self.directions]:
                name = f"l{layer}{suffix}"
                # `steps` and `reads_model_input` are for the analytic FLOP count (parity.flops).
                entries[f"weight_ih_{name}"] = Param((gated, in_features), "linear", "uniform", fan_in=self.hidden_size,
                                                     meta={"steps": self.seq_len, "reads_model_input": layer == 0})
                entries[f"weight_hh_{name}"] = Param((gated, self.hidden_size), "linear", "uniform",
                                                     fan_in=self.hidden_size,
                                                     meta={"steps": self.seq_len, "input_grad_steps": self.seq_len - 1})
                if self.bias:
                    entries[f"bias_ih_{name}"] = Param((gated,), "vector", "uniform", fan_in=self.hidden_size)
                    entries[f"bias_hh_{name}"] = Param((gated,), "vector", "uniform", fan_in=self.hidden_size)
        return entries


@dataclasses.dataclass(frozen=True)
class RNNSpec(RecurrentSpec):
    """Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu."""
    architecture = "rnn"
    num_gates = 1

    nonlinearity: str = "tanh"

    def __post_init__(self):
        super().__post_init__()
        self._choice("nonlinearity", ("tanh", "relu"))


@dataclasses.dataclass(frozen=True)
class LSTMSpec(RecurrentSpec):
    """LSTM (Hochreiter & Schmidhuber, with forget gate): gates i, f, g, o; carries h and c."""
    architecture = "lstm"
    num_gates = 4
    optional_inputs = ("lengths", "h_0", "c_0")
    output_names = ("output", "h_n", "c_n")


@dataclasses.dataclass(frozen=True)
class GRUSpec(RecurrentSpec):
    """GRU (Cho et al. 2014, torch.nn's variant): gates r, z, n, with r applied to W_hn h + b_hn
    (Keras's reset_after=True)."""
    architecture = "gru"
    num_gates = 3
