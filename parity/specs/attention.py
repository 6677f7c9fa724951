"""Multi-head attention (`mha`) and the Transformer (`transformer`, Vaswani et al. 2017, "Attention
Is All You Need"), with the canonical weights and semantics of torch.nn.MultiheadAttention and
torch.nn.Transformer (batch_first=True).

`mha`: torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first=True), kdim =
vdim = embed_dim. Canonical tensors: `in_proj_weight` (3E, E), the query, key and value
projections packed in that order, `in_proj_bias` (3E,), `out_proj.weight` (E, E), `out_proj.bias`.
With D = E / H and W_q, W_k, W_v the thirds of in_proj_weight:

    q, k, v  = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v     (B, L|S, E), split into H heads
    scores   = (q sqrt(1/D)) k^T, -inf where a position is masked          (B, H, L, S)
    weights  = softmax_S(scores), dropout in training                     (B, H, L, S)
    output   = concat_h(weights v) W_o^T + b_o                            (B, L, E)

Inputs: `query` (B, L, E); `key`, `value` (B, S, E) (absent: self-attention on `query`; `value`
absent: the key); `key_padding_mask` (B, S) bool, True = that key position is ignored;
`attn_mask` (L, S) bool, True = query i may NOT attend to key j. Both masks have torch's
polarity, the opposite of Keras' MultiHeadAttention (`attention_mask` True = attend) and Flax's
nnx.MultiHeadAttention (`mask` True = attend). Outputs: `output` (B, L, E) and `weights`
(B, L, S), the attention weights averaged over the heads (need_weights=True,
average_attn_weights=True). A query row whose every key is masked gets NaN in `output` and
`weights`, as torch.nn.MultiheadAttention gives it (tests/test_attention.py).

`transformer`: the encoder-decoder, token embeddings scaled by sqrt(d_model) plus sinusoidal
positions (computed, not stored), torch.nn.Transformer (d_model, nhead, num_encoder_layers,
num_decoder_layers, dim_feedforward, dropout, activation, layer_norm_eps, batch_first=True,
norm_first) under `transformer.`, a Linear `head` to the target vocabulary. Inputs as the seq2seq
family's: `tokens` (B, S) source ids, optional `lengths` (B,) (positions >= length are PAD: masked
as keys in the encoder's self-attention and the decoder's cross-attention), `decoder_tokens`
(B, T), required (teacher forcing: BOS, then the target without its last id; the causal mask is
built inside). Output `logits` (B, T, target_vocab_size); loss: cross-entropy over every
(example, step). Special ids PAD 0, BOS 1, EOS 2 (Seq2SeqSpec's).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import numpy as np

from parity import params
from parity.params import Param
from parity.specs.base import Spec, TensorDecl
from parity.specs.seq2seq import Seq2SeqSpec


@functools.lru_cache(maxsize=16)
def sinusoidal_positions(length: int, d_model: int) -> np.ndarray:
    """The paper's positional encodings (section 3.5), float64, read-only (length, d_model):
    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)), PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model)).
    Computed once here in numpy, so every framework adds the same bits (cast to its dtype)."""
    position = np.arange(length, dtype=np.float64)[:, None]  # (length, 1)
    frequency = np.power(10000.0, -np.arange(0, d_model, 2, dtype=np.float64) / d_model)  # (d_model / 2,)
    table = np.zeros((length, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(position * frequency)
    table[:, 1::2] = np.cos(position * frequency)
    table.flags.writeable = False
    return table


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _in_projection(prefix: str, embed_dim: int, bias: bool) -> dict[str, Param]:
    """torch.nn.MultiheadAttention's packed q, k, v projection. torch initialises the weight
    xavier-uniform and the bias to 0; here both are U(+-1/sqrt(E)), torch.nn.Linear's default,
    so a parity check sees the biases. `steps` 0: its three thirds run on different row counts
    (L queries, S keys and values), which one Param's `steps` cannot say; the spec's
    `activation_matmuls` counts them instead (parity.flops)."""
    E = embed_dim
    entries = {_join(prefix, "in_proj_weight"): Param((3 * E, E), "linear", "uniform", fan_in=E, meta={"steps": 0})}
    if bias:
        entries[_join(prefix, "in_proj_bias")] = Param((3 * E,), "vector", "uniform", fan_in=E)
    return entries


def _attention(prefix: str, embed_dim: int, bias: bool, queries: int) -> dict[str, Param]:
    """A torch.nn.MultiheadAttention's tensors under `prefix`; out_proj runs on `queries` rows."""
    entries = _in_projection(prefix, embed_dim, bias)
    entries.update(params.linear(_join(prefix, "out_proj"), embed_dim, embed_dim, bias=bias, steps=queries))
    return entries


def _attention_matmuls(prefix: str, embed_dim: int, queries: int, keys: int, *,
                       reads_model_input: bool = False) -> list[tuple[str, int, int]]:
    """(what, MACs, input-gradient MACs) per example of one multi-head attention: the q, k, v
    projections (the thirds of in_proj_weight, E x E each), the scores q k^T and the context
    weights v (H heads of D = E / H: L x S x E in all). `reads_model_input`: the projections read
    the model's inputs, whose gradient is not needed."""
    E, L, S = embed_dim, queries, keys
    projection = E * E * (L + 2 * S)
    scores = L * S * E
    return [(f"{prefix}in_proj", projection, 0 if reads_model_input else projection),
            (f"{prefix}scores", scores, scores), (f"{prefix}context", scores, scores)]


@dataclasses.dataclass(frozen=True)
class MHASpec(Spec):
    """torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first=True) as a model:
    the equations and masks are in the module docstring. Reference preset `base`: the Transformer
    base model's attention (d_model 512, 8 heads, attention dropout 0.1)."""
    architecture = "mha"
    family = "transformers"
    presets = {
        "tiny": {"embed_dim": 8, "num_heads": 2, "dropout": 0.1, "bias": True, "seq_len": 4, "source_len": 5},
        "base": {"embed_dim": 512, "num_heads": 8, "dropout": 0.1, "bias": True, "seq_len": 128, "source_len": 128},
    }
    reference_preset = "base"
    input_kind = "query"
    optional_inputs = ("key", "value", "key_padding_mask", "attn_mask")
    output_names = ("output", "weights")
    loss = "mse"  # of `output` against a target of its shape
    loss_output = "output"
    stochastic_fields = ("dropout",)
    classifier = "out_proj"

    embed_dim: int
    num_heads: int
    dropout: float  # on the attention weights, in training (torch.nn.MultiheadAttention's `dropout`)
    bias: bool  # in_proj_bias and out_proj.bias
    seq_len: int  # L, the queries of examples and benchmarks
    source_len: int  # S, the keys and values of examples and benchmarks

    def __post_init__(self):
        for name in ("embed_dim", "num_heads", "seq_len", "source_len"):
            self._positive_int(name)
        self._require(self.embed_dim % self.num_heads == 0, "embed_dim",
                      f"a multiple of num_heads ({self.num_heads})")
        self._probability("dropout")
        self._require(isinstance(self.bias, bool), "bias", "a bool")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def input_shape(self):
        return (self.seq_len, self.embed_dim)

    def layout(self):
        return _attention("", self.embed_dim, self.bias, self.seq_len)

    def activation_matmuls(self):
        return _attention_matmuls("", self.embed_dim, self.seq_len, self.source_len, reads_model_input=True)

    def declared_inputs(self):
        E = self.embed_dim
        return {
            "query": TensorDecl(("B", "L", E), "float", meaning="queries"),
            "key": TensorDecl(("B", "S", E), "float", meaning="keys (absent: self-attention on the query)"),
            "value": TensorDecl(("B", "S", E), "float", meaning="values (absent: the key)"),
            "key_padding_mask": TensorDecl(("B", "S"), "bool",
                                           meaning="True = this key position is ignored (torch's polarity)"),
            "attn_mask": TensorDecl(("L", "S"), "bool",
                                    meaning="True = query i may not attend to key j (torch's polarity)"),
        }

    def declared_outputs(self):
        return {"output": ("B", "L", self.embed_dim), "weights": ("B", "L", "S")}

    def declared_targets(self):
        return TensorDecl(("B", "L", self.embed_dim), "float", meaning="targets of `output`")

    def example_inputs(self, rng, batch_size, dtype):
        """Cross-attention over `source_len` keys with both masks: key padding after a random length
        (the first example unpadded), and an attention mask that blocks ~30% of the (query, key)
        pairs but never key 0, so no query row is fully masked (that row is NaN, as in torch)."""
        L, S, E = self.seq_len, self.source_len, self.embed_dim
        query, key, value = (rng.standard_normal((batch_size, n, E)).astype(dtype) for n in (L, S, S))
        lengths = rng.integers(1, S + 1, batch_size)
        lengths[0] = S
        attn_mask = rng.random((L, S)) < 0.3
        attn_mask[:, 0] = False
        inputs = {"query": query, "key": key, "value": value,
                  "key_padding_mask": np.arange(S)[None, :] >= lengths[:, None], "attn_mask": attn_mask}
        return inputs, rng.standard_normal((batch_size, L, E)).astype(dtype)


@dataclasses.dataclass(frozen=True)
class TransformerSpec(Spec):
    """The Transformer encoder-decoder, as the module docstring says. Field names are
    torch.nn.Transformer's arguments. `norm_first` False is the paper's post-norm
    (x = LayerNorm(x + Sublayer(x))), True pre-norm (x = x + Sublayer(LayerNorm(x))); torch.nn.Transformer
    always ends the encoder and the decoder with a LayerNorm (`encoder.norm`, `decoder.norm`), in both.
    Dropout (the paper's P_drop) on the attention weights, after each sublayer, inside the
    feed-forward block, and on the embeddings plus positions. Reference preset `base`: the paper's base
    model (d_model 512, 8 heads, 6 + 6 layers, d_ff 2048, P_drop 0.1, a 37 000-token vocabulary, here
    the size of both vocabularies: the paper shares one embedding matrix between them and the
    pre-softmax layer, this model keeps the three separate)."""
    PAD: ClassVar[int] = Seq2SeqSpec.PAD
    BOS: ClassVar[int] = Seq2SeqSpec.BOS
    EOS: ClassVar[int] = Seq2SeqSpec.EOS
    architecture = "transformer"
    family = "transformers"
    presets = {
        "tiny": {"source_vocab_size": 11, "target_vocab_size": 12, "d_model": 8, "nhead": 2, "num_encoder_layers": 2,
                 "num_decoder_layers": 2, "dim_feedforward": 16, "dropout": 0.1, "activation": "relu",
                 "layer_norm_eps": 1e-5, "norm_first": False, "source_len": 5, "target_len": 4, "max_len": 16},
        "base": {"source_vocab_size": 37000, "target_vocab_size": 37000, "d_model": 512, "nhead": 8,
                 "num_encoder_layers": 6, "num_decoder_layers": 6, "dim_feedforward": 2048, "dropout": 0.1,
                 "activation": "relu", "layer_norm_eps": 1e-5, "norm_first": False, "source_len": 64, "target_len": 64,
                 "max_len": 512},
    }
    reference_preset = "base"
    input_kind = "tokens"
    optional_inputs = ("lengths", "decoder_tokens")
    output_names = ("logits",)
    loss = "cross_entropy"  # of the next target id, mean over every (example, step)
    loss_output = "logits"
    stochastic_fields = ("dropout",)
    classifier = "head"

    source_vocab_size: int
    target_vocab_size: int
    d_model: int
    nhead: int
    num_encoder_layers: int
    num_decoder_layers: int
    dim_feedforward: int
    dropout: float
    activation: str  # of the feed-forward block: "relu" or "gelu" (exact, erf: torch's)
    layer_norm_eps: float
    norm_first: bool
    source_len: int  # S of examples and benchmarks; the model takes any S <= max_len
    target_len: int  # T of examples and benchmarks; any T <= max_len
    max_len: int  # rows of the positions table: the longest source or target

    def __post_init__(self):
        for name in ("source_vocab_size", "target_vocab_size", "d_model", "nhead", "num_encoder_layers",
                     "num_decoder_layers", "dim_feedforward", "source_len", "target_len", "max_len"):
            self._positive_int(name)
        for name in ("source_vocab_size", "target_vocab_size"):
            self._require(getattr(self, name) > self.EOS, name, f"an int > {self.EOS} (PAD, BOS, EOS are ids 0-2)")
        self._require(self.d_model % self.nhead == 0, "d_model", f"a multiple of nhead ({self.nhead})")
        self._require(self.d_model % 2 == 0, "d_model", "an even int (sine and cosine positions come in pairs)")
        self._probability("dropout")
        self._choice("activation", ("relu", "gelu"))
        self._positive_float("layer_norm_eps")
        self._require(isinstance(self.norm_first, bool), "norm_first", "a bool")
        for name in ("source_len", "target_len"):
            self._require(getattr(self, name) <= self.max_len, name, f"at most max_len ({self.max_len})")

    @property
    def num_classes(self) -> int:  # what a cross-entropy target indexes
        return self.target_vocab_size

    @property
    def input_shape(self):
        return (self.source_len,)

    @property
    def embedding_scale(self) -> float:
        """The embeddings are multiplied by sqrt(d_model) (the paper's section 3.4)."""
        return math.sqrt(self.d_model)

    def positional_encoding(self) -> np.ndarray:
        """The sinusoidal table, float64 (max_len, d_model); the models take its first rows with
        their own slicing, so the length may be a symbolic axis of an export."""
        return sinusoidal_positions(self.max_len, self.d_model)

    def layout(self):
        """Module order: the two embeddings, torch.nn.Transformer (its own state_dict order), head.
        The embeddings start N(0, 1/d_model) (fairseq's Transformer), so the sqrt(d_model)-scaled
        embedding has unit scale beside the positions; everything else torch.nn's Linear default
        (nn.Transformer itself re-draws its matrices xavier-uniform), norms 1 and 0."""
        E, F, S, T = self.d_model, self.dim_feedforward, self.source_len, self.target_len
        std = {"std": 1.0 / math.sqrt(E)}
        entries = {"encoder_embedding.weight": Param((self.source_vocab_size, E), "embedding", "normal", meta=std),
                   "decoder_embedding.weight": Param((self.target_vocab_size, E), "embedding", "normal", meta=std)}

        def norm(prefix):
            return {f"{prefix}.weight": Param((E,), "vector", "norm_weight"),
                    f"{prefix}.bias": Param((E,), "vector", "norm_bias")}

        def feed_forward(prefix, rows):
            return {**params.linear(f"{prefix}.linear1", E, F, steps=rows),
                    **params.linear(f"{prefix}.linear2", F, E, steps=rows)}

        for i in range(self.num_encoder_layers):
            prefix = f"transformer.encoder.layers.{i}"
            entries.update(_attention(f"{prefix}.self_attn", E, True, S))
            entries.update(feed_forward(prefix, S))
            entries.update({**norm(f"{prefix}.norm1"), **norm(f"{prefix}.norm2")})
        entries.update(norm("transformer.encoder.norm"))
        for i in range(self.num_decoder_layers):
            prefix = f"transformer.decoder.layers.{i}"
            entries.update(_attention(f"{prefix}.self_attn", E, True, T))
            entries.update(_attention(f"{prefix}.multihead_attn", E, True, T))
            entries.update(feed_forward(prefix, T))
            entries.update({**norm(f"{prefix}.norm1"), **norm(f"{prefix}.norm2"), **norm(f"{prefix}.norm3")})
        entries.update(norm("transformer.decoder.norm"))
        entries.update(params.linear("head", E, self.target_vocab_size, steps=T))
        return entries

    def activation_matmuls(self):
        """Every attention's projections, scores and context (`_attention_matmuls`): the encoder's
        self-attention over S positions, the decoder's over T (the causal mask's zeros are computed
        too) and its cross-attention of T queries over S memory positions. Every projection's input
        gradient is needed (the embeddings are trained)."""
        E, S, T = self.d_model, self.source_len, self.target_len
        matmuls = []
        for i in range(self.num_encoder_layers):
            matmuls += _attention_matmuls(f"transformer.encoder.layers.{i}.self_attn.", E, S, S)
        for i in range(self.num_decoder_layers):
            matmuls += _attention_matmuls(f"transformer.decoder.layers.{i}.self_attn.", E, T, T)
            matmuls += _attention_matmuls(f"transformer.decoder.layers.{i}.multihead_attn.", E, T, S)
        return matmuls

    def declared_inputs(self):
        return {
            "tokens": TensorDecl(("B", "S"), "int", high=self.source_vocab_size,
                                 meaning="token ids (the source vocabulary)"),
            "lengths": TensorDecl(("B",), "int", low=1, high=self.max_len + 1,
                                  meaning="source lengths (positions >= length are PAD)"),
            "decoder_tokens": TensorDecl(("B", "T"), "int", high=self.target_vocab_size, required=True,
                                         meaning="token ids (the target vocabulary) the decoder reads: BOS, "
                                                 "then the target without its last id"),
        }

    def declared_outputs(self):
        return {"logits": ("B", "T", self.target_vocab_size)}

    def axis_limits(self):
        return {"S": (self.max_len, "max_len"), "T": (self.max_len, "max_len")}

    def declared_targets(self):
        return TensorDecl(("B", "T"), "int", high=self.target_vocab_size, meaning="target ids (the target vocabulary)")

    def example_inputs(self, rng, batch_size, dtype):
        """As the seq2seq family's: PAD-padded source ids after a random length (the first example
        unpadded), target ids (EOS or a word) and the teacher-forced decoder_tokens (BOS, then the
        targets without the last)."""
        S, T = self.source_len, self.target_len
        lengths = rng.integers(1, S + 1, batch_size)
        lengths[0] = S
        first = self.EOS + 1  # ids after PAD, BOS, EOS
        tokens = rng.integers(first, self.source_vocab_size, (batch_size, S))
        tokens[np.arange(S)[None, :] >= lengths[:, None]] = self.PAD
        targets = rng.integers(self.EOS, self.target_vocab_size, (batch_size, T))
        decoder_tokens = np.concatenate([np.full((batch_size, 1), self.BOS), targets[:, :-1]], axis=1)
        return {"tokens": tokens, "lengths": lengths, "decoder_tokens": decoder_tokens}, targets
