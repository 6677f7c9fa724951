"""Encoder-decoder (seq2seq) translation models with attention: Bahdanau et al. (2015) additive
attention over a bidirectional GRU encoder, and Luong et al. (2015) global attention ("general"
or "dot" score, input feeding) over an LSTM stack.

Inputs are named: `tokens` (B, S) int64 source ids (the source vocabulary), optional `lengths`
(B,) in [1, S] (source positions j >= lengths[b] are padding: the encoder packs them away and
the attention gives them weight exactly 0), optional `decoder_tokens` (B, T) int64 target-side
ids the decoder reads (teacher forcing: BOS, then the target without its last id). Without
`decoder_tokens` the model decodes greedily for `target_len` steps from BOS, feeding back its own
argmax (inference). Outputs: `logits` (B, T, target_vocab_size) and `attention` (B, T, S), the
attention weights of every target step over the source positions.

Special ids (`PAD`, `BOS`, `EOS`, the same as parity.decoding's): PAD 0 pads sources and
targets, BOS 1 is the decoder's first input, EOS 2 ends a target. The loss is the mean
cross-entropy of `logits` over every (example, step), PAD targets included (mask them in a
training loop that pads targets).

Canonical names are plain PyTorch module names (`encoder_embedding.weight`, `encoder.weight_ih_l0`
as in torch.nn.GRU/LSTM, `attention.query.weight`, `head.weight`, ...): a curriculum model, no
public reference checkpoint.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from parity import params
from parity.params import Param
from parity.specs.base import Spec
from parity.specs.recurrent import GRUSpec, LSTMSpec


def _reads_embedding(layout: dict[str, Param], prefix: str) -> dict[str, Param]:
    """A recurrent stack's layout under `prefix`, its layer 0 reading an embedding (or any
    activation whose gradient is needed): the input gradient of its input weights is computed."""
    entries = {}
    for name, param in layout.items():
        if "reads_model_input" in param.meta:
            param = dataclasses.replace(param, meta={**param.meta, "reads_model_input": False})
        entries[f"{prefix}.{name}"] = param
    return entries


def _decoder_entries(layout: dict[str, Param], steps: int) -> dict[str, Param]:
    """The decoder stack under `decoder.`: it reads the embedding and starts from a state that
    needs its gradient, so every step computes the input gradient of every weight."""
    return {name: dataclasses.replace(p, meta={**p.meta, "input_grad_steps": steps}) if "weight_hh" in name else p
            for name, p in _reads_embedding(layout, "decoder").items()}


@dataclasses.dataclass(frozen=True)
class Seq2SeqSpec(Spec):
    """What both attention models share: the vocabularies, sizes and example lengths."""
    PAD: ClassVar[int] = 0
    BOS: ClassVar[int] = 1
    EOS: ClassVar[int] = 2
    input_kind = "tokens"
    optional_inputs = ("lengths", "decoder_tokens")
    output_names = ("logits", "attention")
    loss = "cross_entropy"  # of the next target id, mean over every (example, step)
    classifier = "head"
    family = "sequence"
    encoder_directions: ClassVar[int] = 1

    source_vocab_size: int
    target_vocab_size: int
    embedding_dim: int
    hidden_size: int
    num_layers: int  # of the encoder (and of Luong's decoder)
    source_len: int  # example lengths for checks and benchmarks; the model takes any length
    target_len: int  # also the number of greedy steps without decoder_tokens

    def __post_init__(self):
        for name in ("source_vocab_size", "target_vocab_size", "embedding_dim", "hidden_size", "num_layers",
                     "source_len", "target_len"):
            self._positive_int(name)
        for name in ("source_vocab_size", "target_vocab_size"):
            self._require(getattr(self, name) > self.EOS, name, f"an int > {self.EOS} (PAD, BOS, EOS are ids 0-2)")

    @property
    def num_classes(self) -> int:  # what a cross-entropy target indexes
        return self.target_vocab_size

    @property
    def input_shape(self):
        return (self.source_len,)

    @property
    def memory_size(self) -> int:
        """Features of the encoder memory h_j: directions * hidden_size."""
        return self.encoder_directions * self.hidden_size

    def activation_matmuls(self) -> list[tuple[str, int, int]]:
        """Matmuls between activations (no weight), for parity.flops: (what, MACs per example,
        input-gradient MACs per example). Every step: the context c_t = alpha_t^T H, (1 x S) by
        (S x memory_size); both operands need their gradients."""
        context = self.target_len * self.source_len * self.memory_size
        return [("attention.context", context, context)]


@dataclasses.dataclass(frozen=True)
class BahdanauSpec(Seq2SeqSpec):
    """RNNsearch (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to
    Align and Translate").

    Encoder: h_j = [h->_j; h<-_j] (2H) from a bidirectional GRU (`num_layers` layers) over the
    source embeddings. Decoder, a 1-layer GRU with state s (H), s_0 = tanh(W_s h<-_1) (`bridge`,
    with bias; h<-_1 is the last layer's backward state at the first position). Step t:

        e_tj   = v^T tanh(W_a s_{t-1} + U_a h_j)     (`attention.query` W_a, `.key` U_a, `.energy` v)
        alpha_t = softmax_j(e_tj) over valid j         (exactly 0 at padded positions)
        c_t    = sum_j alpha_tj h_j                    (2H)
        s_t    = GRU([E y_{t-1}; c_t], s_{t-1})        (`decoder`, torch.nn.GRU's r, z, n)
        logits = W_o [s_t; c_t] + b_o                  (`head`)

    U_a h_j does not depend on t and is computed once per source (the paper's appendix A.1.2).
    The output layer is a plain Linear over [s_t; c_t], not the paper's maxout layer over
    [s_t; E y_{t-1}; c_t]. Reference preset `rnnsearch`: the paper's RNNsearch-50 sizes
    (30 000-word vocabularies, 620-dim embeddings, 1000 hidden units, 1000 alignment units,
    sentences up to 50 words).
    """
    architecture = "seq2seq_bahdanau"
    presets = {
        "tiny": {"source_vocab_size": 7, "target_vocab_size": 8, "embedding_dim": 5, "hidden_size": 6,
                 "num_layers": 2, "source_len": 5, "target_len": 4, "attention_size": 4},
        "rnnsearch": {"source_vocab_size": 30000, "target_vocab_size": 30000, "embedding_dim": 620,
                      "hidden_size": 1000, "num_layers": 1, "source_len": 50, "target_len": 50,
                      "attention_size": 1000},
    }
    reference_preset = "rnnsearch"
    encoder_directions = 2

    attention_size: int = 1000  # the alignment model's hidden units (the paper's n')

    def __post_init__(self):
        super().__post_init__()
        self._positive_int("attention_size")

    @property
    def encoder_spec(self) -> GRUSpec:
        """The encoder as a spec of its own: the GRU model class builds it in every framework."""
        return GRUSpec(input_size=self.embedding_dim, hidden_size=self.hidden_size, num_layers=self.num_layers,
                       bidirectional=True, seq_len=self.source_len)

    @property
    def decoder_spec(self) -> GRUSpec:
        """One GRU layer over [E y_{t-1}; c_t], stepped once per target position."""
        return GRUSpec(input_size=self.embedding_dim + self.memory_size, hidden_size=self.hidden_size,
                       num_layers=1, seq_len=self.target_len)

    def layout(self):
        """Module order: encoder, bridge, decoder embedding, attention, decoder, head.
        torch.nn.Embedding starts standard normal, everything else torch.nn's uniform default.
        `steps` (FLOP count): the query, decoder and head run once per target step, the key once
        per source position, the energy at every (target step, source position)."""
        S, T, H, A, M = self.source_len, self.target_len, self.hidden_size, self.attention_size, self.memory_size
        entries = {"encoder_embedding.weight": Param((self.source_vocab_size, self.embedding_dim), "embedding",
                                                     "normal")}
        entries.update(_reads_embedding(self.encoder_spec.layout(), "encoder"))
        entries.update(params.linear("bridge", H, H))
        entries["decoder_embedding.weight"] = Param((self.target_vocab_size, self.embedding_dim), "embedding",
                                                    "normal")
        entries.update(params.linear("attention.query", H, A, bias=False, steps=T))
        entries.update(params.linear("attention.key", M, A, bias=False, steps=S))
        entries.update(params.linear("attention.energy", A, 1, bias=False, steps=T * S))
        # s_0 comes from the bridge and needs its gradient: no step of weight_hh skips its input gradient.
        entries.update(_decoder_entries(self.decoder_spec.layout(), T))
        entries.update(params.linear("head", H + M, self.target_vocab_size, steps=T))
        return entries


@dataclasses.dataclass(frozen=True)
class LuongSpec(Seq2SeqSpec):
    """Global attention with input feeding (Luong, Pham & Manning 2015, "Effective Approaches to
    Attention-based Neural Machine Translation").

    Encoder: h_j (H) from a `num_layers` LSTM over the source embeddings. Decoder: a
    `num_layers` LSTM starting from the encoder's final (h_n, c_n), htilde_0 = 0. Step t:

        s_t      = LSTM([E y_{t-1}; htilde_{t-1}], state)     (`decoder`, input feeding)
        e_tj     = (W_a s_t)^T h_j  ("general", `attention.score`) or s_t^T h_j ("dot")
        alpha_t  = softmax_j(e_tj) over valid j               (exactly 0 at padded positions)
        c_t      = sum_j alpha_tj h_j
        htilde_t = tanh(W_c [c_t; s_t])                       (`attention.combine`)
        logits   = W_o htilde_t + b_o                         (`head`)

    The general score applies its Linear to the decoder state (OpenNMT-py's GlobalAttention
    `linear_in`): the paper's h_t^T W_a h_s with W_a = `attention.score.weight` transposed, one
    H x H product per step instead of one per source position. Reference preset `luong`: the
    paper's 4-layer, 1000-unit LSTMs, 1000-dim embeddings, 50 000-word vocabularies, sentences
    up to 50 words.
    """
    architecture = "seq2seq_luong"
    presets = {
        "tiny": {"source_vocab_size": 7, "target_vocab_size": 8, "embedding_dim": 5, "hidden_size": 6,
                 "num_layers": 2, "source_len": 5, "target_len": 4, "score": "general"},
        "luong": {"source_vocab_size": 50000, "target_vocab_size": 50000, "embedding_dim": 1000,
                  "hidden_size": 1000, "num_layers": 4, "source_len": 50, "target_len": 50, "score": "general"},
    }
    reference_preset = "luong"

    score: str = "general"  # "general": (W_a s_t)^T h_j; "dot": s_t^T h_j (no weight)

    def __post_init__(self):
        super().__post_init__()
        self._choice("score", ("general", "dot"))

    @property
    def encoder_spec(self) -> LSTMSpec:
        return LSTMSpec(input_size=self.embedding_dim, hidden_size=self.hidden_size, num_layers=self.num_layers,
                        seq_len=self.source_len)

    @property
    def decoder_spec(self) -> LSTMSpec:
        """The LSTM stack over [E y_{t-1}; htilde_{t-1}] (input feeding), stepped once per target position."""
        return LSTMSpec(input_size=self.embedding_dim + self.hidden_size, hidden_size=self.hidden_size,
                        num_layers=self.num_layers, seq_len=self.target_len)

    def activation_matmuls(self):
        """The context (as the base class says) and the score e_t = H q_t, (S x H) by (H x 1)."""
        score = self.target_len * self.source_len * self.hidden_size
        return [("attention.scores", score, score), *super().activation_matmuls()]

    def layout(self):
        """Module order: encoder, decoder, attention, head; initialised like torch.nn."""
        T, H = self.target_len, self.hidden_size
        entries = {"encoder_embedding.weight": Param((self.source_vocab_size, self.embedding_dim), "embedding",
                                                     "normal")}
        entries.update(_reads_embedding(self.encoder_spec.layout(), "encoder"))
        entries["decoder_embedding.weight"] = Param((self.target_vocab_size, self.embedding_dim), "embedding",
                                                    "normal")
        # The decoder starts from the encoder's states, which need their gradients: no step skips them.
        entries.update(_decoder_entries(self.decoder_spec.layout(), T))
        if self.score == "general":
            entries.update(params.linear("attention.score", H, H, bias=False, steps=T))
        entries.update(params.linear("attention.combine", 2 * H, H, bias=False, steps=T))
        entries.update(params.linear("head", H, self.target_vocab_size, steps=T))
        return entries
