"""Character-level language model (char-rnn): embedding -> LSTM stack -> Linear over the vocabulary.

Canonical names nest torch.nn modules: `embedding.weight` (torch.nn.Embedding), `rnn.weight_ih_l0`
... (torch.nn.LSTM), `head.weight` / `head.bias` (torch.nn.Linear). Inputs are named like the
recurrent layers': `tokens` (B, T) int64 character ids, optional `h_0` / `c_0`, so truncated
backpropagation through time carries the final states of one window into the next. Outputs:
`logits` (B, T, vocab_size) for the next character at every step, and `h_n`, `c_n`.
"""
from __future__ import annotations

import dataclasses

from parity import params
from parity.params import Param
from parity.specs.base import Spec
from parity.specs.recurrent import LSTMSpec


@dataclasses.dataclass(frozen=True)
class CharLMSpec(Spec):
    architecture = "char_lm"
    presets = {
        "tiny": {"vocab_size": 11, "embedding_dim": 5, "hidden_size": 6, "num_layers": 2, "seq_len": 7},
        # Karpathy's char-rnn defaults (2 x 128 LSTM, 50-step windows) on tiny-shakespeare's 65 characters.
        "char-rnn": {},
    }
    reference_preset = "char-rnn"
    input_kind = "tokens"
    optional_inputs = ("h_0", "c_0")
    loss = "cross_entropy"  # of the next character, mean over every (example, step)
    output_names = ("logits", "h_n", "c_n")
    stochastic_fields = ("dropout",)
    classifier = "head"
    family = "sequence"

    vocab_size: int = 65
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.0  # between LSTM layers, in training (torch.nn.LSTM's `dropout`)
    seq_len: int = 50  # the truncated-BPTT window of examples and training

    def __post_init__(self):
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers", "seq_len"):
            self._positive_int(name)
        self._probability("dropout")

    @property
    def num_classes(self) -> int:  # what a cross-entropy target indexes
        return self.vocab_size

    @property
    def input_shape(self):
        return (self.seq_len,)

    @property
    def recurrent(self) -> LSTMSpec:
        """The LSTM stack as a spec of its own: the same model class builds it in every framework."""
        return LSTMSpec(input_size=self.embedding_dim, hidden_size=self.hidden_size, num_layers=self.num_layers,
                        dropout=self.dropout, seq_len=self.seq_len)

    @property
    def state_shape(self) -> tuple[int, int]:
        return self.recurrent.state_shape

    def layout(self):
        # torch.nn.Embedding starts standard normal; every other tensor torch.nn's uniform default.
        entries = {"embedding.weight": Param((self.vocab_size, self.embedding_dim), "embedding", "normal")}
        for name, param in self.recurrent.layout().items():
            if "reads_model_input" in param.meta:  # it reads the embedding, whose gradient is needed
                param = dataclasses.replace(param, meta={**param.meta, "reads_model_input": False})
            entries[f"rnn.{name}"] = param
        entries.update(params.linear("head", self.hidden_size, self.vocab_size, steps=self.seq_len))
        return entries
