"""T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer") with the state-dict names and semantics of Hugging Face transformers'
`T5ForConditionalGeneration` (eager attention, transformers 5.24).

Fields carry `T5Config`'s names, so `parity.spec("t5", "tiny", **T5Config(...).to_dict())` gives
that model (`seq_len` and `target_len`, ours, are the example lengths of checks and benchmarks).
With C = d_model, H = num_heads heads of D = d_kv (H * D need not be C), F = d_ff, every norm a
T5LayerNorm and every Linear without a bias:

    encoder (`encoder.block.{i}`, i < num_layers), from x = dropout(shared[input_ids])    (B, S, C)
      x = x + dropout(SelfAttention(ln(x), bias = position_bias(S, S, bidirectional) + m_src))
      x = x + dropout(DenseReluDense(ln(x)))
      h = dropout(final_layer_norm(x))
    decoder (`decoder.block.{i}`, i < num_decoder_layers), from y = dropout(shared[decoder_input_ids])
      y = y + dropout(SelfAttention(ln(y), bias = position_bias(T, T, causal) + m_causal))
      y = y + dropout(EncDecAttention(ln(y), keys/values from h, bias = m_src))     (no position bias)
      y = y + dropout(DenseReluDense(ln(y)))
      y = dropout(final_layer_norm(y))
    logits = (y * C^-0.5 if scale_decoder_outputs else y) W_head^T                   (B, T, vocab_size)

- T5LayerNorm is an RMS norm: w * x / sqrt(mean(x^2) + eps), no mean subtracted, no bias.
  transformers computes mean(x^2) in float32 whatever the model's dtype: in a float64 model
  (model.double()) that is a DOWNcast, and its float64 T5 is float32-accurate (measured ~1e-7
  relative off a float64 computation). parity computes it in max(dtype, float32), as torch.nn.RMSNorm,
  keras.layers.RMSNormalization and nnx.RMSNorm all do: float32 is transformers' function bit for
  bit, float64 stays float64 (tests/test_t5.py compares float64 against transformers with its norm
  patched to the same rule, and keeps the measurement of the unpatched one).
- Attention: scores = q k^T, NOT scaled by D^-0.5 (the scale is folded into q's init), then
  + position_bias, then + mask, softmax, dropout, times v; heads merged, `o`.
- Relative position bias: each (query i, key j) pair reads row bucket(j - i) of block 0's
  `relative_attention_bias` (relative_attention_num_buckets x H) and every block of the stack
  adds that same (1, H, T, S) bias (only block 0 holds the table). The encoder's buckets are
  bidirectional (half of them for keys after the query), the decoder's causal. Within
  max_exact = buckets / 2 (of one direction) a distance is its own bucket; beyond, buckets grow
  logarithmically up to relative_attention_max_distance, and every longer distance shares the last.
  transformers computes that log bucket in float32 (`.float()`, whatever the model's dtype):
      max_exact + int(log(d / max_exact) / log(max_distance / max_exact) * (buckets - max_exact))
  and at a boundary where that is an exact integer (distance 10 of buckets 6, max distance 100:
  log(10) / log(100) * 2 = 1) one rounding decides the bucket. XLA rewrites the division by a
  constant into a multiplication by its reciprocal (jax.jit and TF's jit_compile), which rounds the
  other way there (measured: JAX gives bucket 1 where transformers gives 2). So the float formula
  is evaluated once here, in float32 numpy op by op as transformers does, into integer thresholds
  (`relative_position_thresholds`), and every framework computes a bucket from positions by integer
  comparisons only: bucket = offset + #{thresholds t : distance >= t}. tests/test_t5.py checks the
  full tables up to distance 600 against transformers' `_relative_position_bucket`.
- Masks are transformers' eager masks, ADDED: 0 where allowed, finfo(dtype).min where not (finite:
  a query with every key masked gets a uniform softmax, not NaN). m_src masks padded source keys
  (attention_mask, 1 = attend) in the encoder and in every cross-attention; m_causal masks later
  positions and padded target keys (decoder_attention_mask).
- DenseReluDense is wo(dropout(act(wi x))) (feed_forward_proj "relu": t5-small) or, gated
  ("gated-gelu": T5 v1.1), wo(dropout(act(wi_0 x) * wi_1 x)). T5Config maps "gated-gelu" to
  "gelu_new", GELU's TANH approximation; a plain "gelu" is exact (erf).
- The head: with tie_word_embeddings (t5-small) logits = y C^-0.5 shared^T and `lm_head.weight`
  in transformers' state_dict() is `shared.weight` under another name; untied (T5 v1.1
  checkpoints) `lm_head` has its own weight. transformers 5.24's T5Config keeps the flag only as
  `scale_decoder_outputs` (= tie_word_embeddings is not False) and sets tie_word_embeddings=True
  always: a randomly initialised T5ForConditionalGeneration(T5Config(tie_word_embeddings=False)) has
  its lm_head TIED (one tensor) and unscaled, and its to_dict() says tie_word_embeddings=True,
  scale_decoder_outputs=False; from_pretrained unties a checkpoint whose lm_head differs. So both
  fields are here: `scale_decoder_outputs` None follows tie_word_embeddings (T5Config's rule).

The stacks' `embed_tokens` are `shared` (transformers' state_dict() lists it under three names):
the layout holds it once, as `shared.weight`, and `tied_weights()` maps the aliases to it.

Inputs: `input_ids` (B, S), optional `attention_mask` (B, S) 1 = attend, `decoder_input_ids`
(B, T) (required: the model does not shift labels itself; HF's `_shift_right` of the targets,
decoder_start_token_id first, is what `example_inputs` feeds), optional `decoder_attention_mask`
(B, T). No positions table: any S and T. Output `logits` (B, T, vocab_size); loss: cross-entropy
against targets (B, T) ids, the mean over every (example, position).

Init as transformers' `_init_weights` (factor = initializer_factor): shared and an untied lm_head
N(0, factor), q N(0, factor (C D)^-0.5), k and v N(0, factor C^-0.5), o N(0, factor (H D)^-0.5),
relative_attention_bias N(0, factor C^-0.5), wi / wi_0 / wi_1 N(0, factor C^-0.5), wo
N(0, factor F^-0.5), norms `factor` (meta {"value": factor}; parity's "norm_weight" init is 1).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from parity.params import Param
from parity.specs.base import Spec, TensorDecl

# T5Config.dense_act_fn (feed_forward_proj without its "gated-") -> parity's activation name.
DENSE_ACTS = {"relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
              "silu": "silu"}
FEED_FORWARD_PROJ = (*DENSE_ACTS, *(f"gated-{act}" for act in DENSE_ACTS))


def relative_position_bucket_float32(relative_position, bidirectional: bool, num_buckets: int,
                                     max_distance: int) -> np.ndarray:
    """transformers' `T5Attention._relative_position_bucket`, op by op in float32 numpy (its log
    bucket is computed in float32 whatever the model's dtype): the source of the thresholds."""
    relative_position = np.asarray(relative_position, np.int64)
    buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) where is_small discards it
        scaled = (np.log(relative_position.astype(np.float32) / np.float32(max_exact))
                  / np.float32(math.log(max_distance / max_exact)) * np.float32(num_buckets - max_exact))
        large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(is_small, relative_position, large)


@dataclasses.dataclass(frozen=True)
class T5Spec(Spec):
    """T5ForConditionalGeneration as the module docstring says. Reference preset `t5-small`
    (google-t5/t5-small: 32 128 tokens, 512 wide, 6 + 6 blocks of 8 heads of 64, ReLU, tied head)."""
    architecture = "t5"
    family = "transformers"
    presets = {
        # H * D = 8 != C = 16 and S != T on purpose: transposed or confused axes fail loudly.
        "tiny": {"vocab_size": 64, "d_model": 16, "d_kv": 4, "d_ff": 24, "num_layers": 2, "num_decoder_layers": 2,
                 "num_heads": 2, "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
                 "feed_forward_proj": "relu", "tie_word_embeddings": True, "seq_len": 7, "target_len": 5},
        "tiny-v1.1": {"vocab_size": 64, "d_model": 16, "d_kv": 4, "d_ff": 24, "num_layers": 2,
                      "num_decoder_layers": 3, "num_heads": 2, "relative_attention_num_buckets": 8,
                      "relative_attention_max_distance": 16, "feed_forward_proj": "gated-gelu",
                      "tie_word_embeddings": False, "seq_len": 7, "target_len": 5},
        "t5-small": {"vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6,
                     "num_decoder_layers": 6, "num_heads": 8, "relative_attention_num_buckets": 32,
                     "relative_attention_max_distance": 128, "feed_forward_proj": "relu",
                     "tie_word_embeddings": True, "seq_len": 512, "target_len": 128},
    }
    reference_preset = "t5-small"
    input_kind = "input_ids"
    optional_inputs = ("attention_mask", "decoder_input_ids", "decoder_attention_mask")
    output_names = ("logits",)
    loss = "cross_entropy"  # of the target ids, mean over every (example, position)
    loss_output = "logits"
    stochastic_fields = ("dropout_rate",)

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64  # each head's width D (H * D need not be d_model)
    d_ff: int = 2048
    num_layers: int = 6  # encoder blocks
    num_decoder_layers: int | None = None  # None: num_layers (T5Config's rule)
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1  # embeddings, every sublayer's output, the FF's hidden, attention weights, final
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"  # see FEED_FORWARD_PROJ; "gated-gelu" is GELU's tanh approximation
    tie_word_embeddings: bool = True  # the head is `shared` (no lm_head.weight of its own)
    scale_decoder_outputs: bool | None = None  # y * d_model^-0.5 before the head; None: tie_word_embeddings
    decoder_start_token_id: int = 0  # the first decoder input (T5: the pad id)
    pad_token_id: int = 0  # the id of padded positions in examples
    seq_len: int = 512  # S of examples and benchmarks
    target_len: int = 128  # T of examples and benchmarks

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                     "relative_attention_num_buckets", "relative_attention_max_distance", "seq_len", "target_len"):
            self._positive_int(name)
        self._require(self.num_decoder_layers is None or (isinstance(self.num_decoder_layers, int) and not isinstance(
            self.num_decoder_layers, bool) and self.num_decoder_layers > 0), "num_decoder_layers",
            "None or a positive int")
        # A bidirectional stack gives each direction buckets / 2, of which buckets / 4 are exact.
        self._require(self.relative_attention_num_buckets >= 4, "relative_attention_num_buckets",
                      "at least 4 (each direction of the encoder needs an exact and a log bucket)")
        self._require(self.relative_attention_max_distance > self.relative_attention_num_buckets // 2,
                      "relative_attention_max_distance",
                      f"more than num_buckets / 2 = {self.relative_attention_num_buckets // 2} (the exact buckets)")
        self._probability("dropout_rate")
        self._positive_float("layer_norm_epsilon")
        self._positive_float("initializer_factor")
        self._choice("feed_forward_proj", FEED_FORWARD_PROJ)
        self._require(isinstance(self.tie_word_embeddings, bool), "tie_word_embeddings", "a bool")
        self._require(self.scale_decoder_outputs is None or isinstance(self.scale_decoder_outputs, bool),
                      "scale_decoder_outputs", "None or a bool")
        for name in ("decoder_start_token_id", "pad_token_id"):
            value = getattr(self, name)
            self._require(isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.vocab_size,
                          name, f"an int in [0, vocab_size = {self.vocab_size})")

    # ------------------------------------------------------------------ derived numbers

    @property
    def decoder_layers(self) -> int:
        return self.num_layers if self.num_decoder_layers is None else self.num_decoder_layers

    @property
    def inner_dim(self) -> int:
        """H * D, the width of q, k, v and of o's input."""
        return self.num_heads * self.d_kv

    @property
    def is_gated_act(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self) -> str:
        """T5Config.dense_act_fn: feed_forward_proj without "gated-", and "gated-gelu" -> "gelu_new"."""
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else self.feed_forward_proj.split("-")[-1]

    @property
    def activation(self) -> str:
        """parity's name of the feed-forward activation (what each framework's activations.py builds)."""
        return DENSE_ACTS[self.dense_act_fn]

    @property
    def scales_decoder_outputs(self) -> bool:
        """Whether the decoder output is multiplied by d_model^-0.5 before the head."""
        return self.tie_word_embeddings if self.scale_decoder_outputs is None else self.scale_decoder_outputs

    @property
    def classifier(self) -> str:
        return "shared" if self.tie_word_embeddings else "lm_head"

    @property
    def num_classes(self) -> int:  # what a cross-entropy target indexes
        return self.vocab_size

    @property
    def input_shape(self):
        return (self.seq_len,)

    def relative_position_thresholds(self, bidirectional: bool) -> tuple[int, ...]:
        """The distances where the bucket of one direction steps up: bucket(distance) =
        #{t : distance >= t} (plus num_buckets / 2 for a key after the query, bidirectional).
        1 .. max_exact, then, for each log bucket, the first distance transformers' float32 formula
        puts there (computed here once, so no framework's float rounding can move a boundary)."""
        buckets = self.relative_attention_num_buckets // 2 if bidirectional else self.relative_attention_num_buckets
        max_exact = buckets // 2
        distances = np.arange(0, self.relative_attention_max_distance + 1)
        table = relative_position_bucket_float32(-distances, False, buckets, self.relative_attention_max_distance)
        if np.any(np.diff(table) < 0) or table[-1] != buckets - 1:  # log and IEEE rounding are monotonic
            raise AssertionError(f"t5 bucket table not monotonic up to {buckets - 1}: {table.tolist()}")
        large = tuple(int(np.argmax(table >= bucket)) for bucket in range(max_exact + 1, buckets))
        return tuple(range(1, max_exact + 1)) + large

    # ------------------------------------------------------------------ layout

    def layout(self):
        """T5ForConditionalGeneration's state_dict() order without the aliases of `shared`
        (`encoder.embed_tokens`, `decoder.embed_tokens`, a tied `lm_head`). Init stds in each
        Param's meta; `steps` (parity.flops): the positions a Linear runs on per example (the
        encoder's S, the decoder's T, a cross-attention's k and v the S encoder states)."""
        C, D, F, V = self.d_model, self.d_kv, self.d_ff, self.vocab_size
        S, T, factor = self.seq_len, self.target_len, self.initializer_factor

        def linear(name: str, in_features: int, out_features: int, std: float, steps: int) -> dict[str, Param]:
            return {f"{name}.weight": Param((out_features, in_features), "linear", "normal",
                                            meta={"std": std, "steps": steps, "reads_model_input": False})}

        def layer_norm(name: str) -> dict[str, Param]:
            return {f"{name}.weight": Param((C,), "vector", "norm_weight", meta={"value": factor})}

        def attention(name: str, steps: int, kv_steps: int, relative_bias: bool) -> dict[str, Param]:
            entries = {**linear(f"{name}.q", C, self.inner_dim, factor * (C * D) ** -0.5, steps),
                       **linear(f"{name}.k", C, self.inner_dim, factor * C ** -0.5, kv_steps),
                       **linear(f"{name}.v", C, self.inner_dim, factor * C ** -0.5, kv_steps),
                       **linear(f"{name}.o", self.inner_dim, C, factor * self.inner_dim ** -0.5, steps)}
            if relative_bias:
                entries[f"{name}.relative_attention_bias.weight"] = Param(
                    (self.relative_attention_num_buckets, self.num_heads), "embedding", "normal",
                    meta={"std": factor * C ** -0.5})
            return entries

        def feed_forward(name: str, steps: int) -> dict[str, Param]:
            names = ("wi_0", "wi_1") if self.is_gated_act else ("wi",)
            entries = {}
            for wi in names:
                entries.update(linear(f"{name}.DenseReluDense.{wi}", C, F, factor * C ** -0.5, steps))
            entries.update(linear(f"{name}.DenseReluDense.wo", F, C, factor * F ** -0.5, steps))
            entries.update(layer_norm(f"{name}.layer_norm"))
            return entries

        entries = {"shared.weight": Param((V, C), "embedding", "normal", meta={"std": factor})}
        for i in range(self.num_layers):
            block = f"encoder.block.{i}.layer"
            entries.update(attention(f"{block}.0.SelfAttention", S, S, i == 0))
            entries.update(layer_norm(f"{block}.0.layer_norm"))
            entries.update(feed_forward(f"{block}.1", S))
        entries.update(layer_norm("encoder.final_layer_norm"))
        for i in range(self.decoder_layers):
            block = f"decoder.block.{i}.layer"
            entries.update(attention(f"{block}.0.SelfAttention", T, T, i == 0))
            entries.update(layer_norm(f"{block}.0.layer_norm"))
            entries.update(attention(f"{block}.1.EncDecAttention", T, S, False))
            entries.update(layer_norm(f"{block}.1.layer_norm"))
            entries.update(feed_forward(f"{block}.2", T))
        entries.update(layer_norm("decoder.final_layer_norm"))
        if not self.tie_word_embeddings:
            entries.update(linear("lm_head", C, V, factor, T))
        return entries

    def tied_weights(self):
        aliases = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}
        return {**aliases, "lm_head.weight": "shared.weight"} if self.tie_word_embeddings else aliases

    def activation_matmuls(self):
        """Per example (parity.flops): every attention's scores q k^T and context weights v
        (queries x keys x H D each, both operands needing gradients): the encoder's S x S, the
        decoder's T x T and its cross-attention's T x S; and the tied head (T x C x V, the
        "weight" is `shared`)."""
        S, T, inner = self.seq_len, self.target_len, self.inner_dim
        matmuls = []
        for i in range(self.num_layers):
            name = f"encoder.block.{i}.layer.0.SelfAttention"
            matmuls += [(f"{name}.scores", S * S * inner, S * S * inner),
                        (f"{name}.context", S * S * inner, S * S * inner)]
        for i in range(self.decoder_layers):
            for layer, keys in (("0.SelfAttention", T), ("1.EncDecAttention", S)):
                name = f"decoder.block.{i}.layer.{layer}"
                matmuls += [(f"{name}.scores", T * keys * inner, T * keys * inner),
                            (f"{name}.context", T * keys * inner, T * keys * inner)]
        if self.tie_word_embeddings:
            head = T * self.d_model * self.vocab_size
            matmuls.append(("lm_head", head, head))
        return matmuls

    # ------------------------------------------------------------------ inputs

    def declared_inputs(self):
        return {
            "input_ids": TensorDecl(("B", "S"), "int", high=self.vocab_size, meaning="token ids (the vocabulary)"),
            "attention_mask": TensorDecl(("B", "S"), "mask",
                                         meaning="1 = attend, 0 = padding of input_ids (transformers' polarity)"),
            "decoder_input_ids": TensorDecl(("B", "T"), "int", high=self.vocab_size, required=True,
                                            meaning="token ids (the vocabulary) the decoder reads: "
                                                    "decoder_start_token_id, then the targets without the last"),
            "decoder_attention_mask": TensorDecl(("B", "T"), "mask",
                                                 meaning="1 = attend, 0 = padding of decoder_input_ids"),
        }

    def declared_outputs(self):
        return {"logits": ("B", "T", self.vocab_size)}

    def declared_targets(self):
        return TensorDecl(("B", "T"), "int", high=self.vocab_size, meaning="target ids (the vocabulary)")

    def example_inputs(self, rng, batch_size, dtype):
        """`seq_len` source ids and `target_len` target ids; masks whose first row is all ones and
        whose later rows are right-padded after a random length in [1, len] (padded ids are
        pad_token_id; no query row is fully masked), and the decoder inputs transformers'
        `_shift_right` makes of the targets: decoder_start_token_id, then targets[:, :-1]."""
        S, T = self.seq_len, self.target_len

        def padding(length):
            lengths = rng.integers(1, length + 1, batch_size)
            lengths[0] = length
            return (np.arange(length)[None, :] < lengths[:, None]).astype(np.int64)

        attention_mask = padding(S)
        input_ids = np.where(attention_mask == 1, rng.integers(0, self.vocab_size, (batch_size, S)), self.pad_token_id)
        targets = rng.integers(0, self.vocab_size, (batch_size, T))
        decoder_input_ids = np.concatenate([np.full((batch_size, 1), self.decoder_start_token_id), targets[:, :-1]],
                                           axis=1)
        decoder_attention_mask = padding(T)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids,
                "decoder_attention_mask": decoder_attention_mask}, targets
