"""GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners") with the
state-dict names and semantics of Hugging Face transformers' `GPT2LMHeadModel` (eager attention).

Fields carry `GPT2Config`'s names, so `parity.spec("gpt2", "tiny", **GPT2Config(...).to_dict())`
gives that model (`seq_len`, ours, is the example length of checks and benchmarks). With
C = n_embd, H = n_head, D = C / H, I = n_inner (None: 4C), every block i of n_layer is pre-norm:

    x      = drop(wte[input_ids] + wpe[0 .. T-1])                      embd_pdrop   (B, T, C)
    q|k|v  = ln_1(x) W + b     (attn.c_attn, a Conv1D: W is (C, 3C))                (B, H, T, D) each
    scores = (q k^T) * scale + bias                                                 (B, H, T, T)
             scale = D^-0.5 (1 without scale_attn_weights), / (i + 1) with scale_attn_by_inverse_layer_idx
    a      = attn_dropout(softmax(scores)) v, heads merged             attn_pdrop   (B, T, C)
    x      = x + resid_dropout(attn.c_proj(a))                         resid_pdrop
    x      = x + dropout(mlp.c_proj(act(mlp.c_fc(ln_2(x)))))           resid_pdrop  act: activation_function
    logits = ln_f(x) wte^T                                                          (B, T, vocab_size)

The head is the token embedding itself (tied): `lm_head.weight` in transformers' state_dict() is
`transformer.wte.weight` under a second name, so the canonical layout holds it once and loading
accepts the alias when it equals the embedding (`tied_weights`). transformers 5.24 keeps no buffer
in the state dict (the causal mask is built per call; the old `attn.bias` / `attn.masked_bias`
buffers are gone and ignored on load there).

`bias` is transformers' eager mask: 0 where query i may attend to key j (j <= i and
attention_mask[b, j] == 1), finfo(dtype).min elsewhere, ADDED to the scores. A finite fill, not
-inf: a query row with every key masked (a left-padded position, or an all-zero attention_mask
row) adds the same value to all its scores, which then round to exactly finfo.min, and its
softmax is uniform over ALL T keys, future ones included, instead of NaN. transformers' default
"sdpa" attention differs from its own eager path there (torch's SDPA gives such a row zero
weights); everywhere else the two agree to rounding. tests/test_gpt2.py keeps both measurements.

Positions are 0..T-1 (transformers' default without position_ids or a cache): a right-padded row
reads the same positions as an unpadded one. Inputs: `input_ids` (B, T) in [0, vocab_size),
T <= n_positions; optional `attention_mask` (B, T), 1 = attend, 0 = padding (transformers'
polarity). Output `logits` (B, T, vocab_size); loss: cross-entropy of `logits` against targets
(B, T) ids, mean over every (example, position), padding included: the caller shifts (targets
are the next ids), the model does not (transformers' `labels` shift inside; its `shift_labels`
do not).

Init as transformers' `_init_weights`: every weight normal(0, initializer_range), the residual
projections (`attn.c_proj`, `mlp.c_proj`) with std / sqrt(2 n_layer) (GPT-2's scaled init),
biases 0, LayerNorm 1/0.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np

from parity.params import Param
from parity.specs.base import Spec, TensorDecl

# GPT2Config.activation_function -> the name of parity's activation (every framework's
# activations.py): transformers' "gelu_new" and "gelu_pytorch_tanh" are GPT-2's tanh approximation,
# "gelu" is exact (erf).
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


@dataclasses.dataclass(frozen=True)
class GPT2Spec(Spec):
    """GPT2LMHeadModel as the module docstring says. Reference preset `gpt2`: the 124 M model
    (openai-community/gpt2: 50 257 tokens, 1024 positions, 768 wide, 12 layers of 12 heads)."""
    architecture = "gpt2"
    family = "transformers"
    presets = {
        "tiny": {"vocab_size": 64, "n_positions": 16, "n_embd": 8, "n_layer": 2, "n_head": 2, "seq_len": 6},
        "gpt2": {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
                 "seq_len": 1024},
    }
    reference_preset = "gpt2"
    input_kind = "input_ids"
    optional_inputs = ("attention_mask",)
    output_names = ("logits",)
    loss = "cross_entropy"  # of the next id (the caller shifts), mean over every (example, position)
    loss_output = "logits"
    stochastic_fields = ("resid_pdrop", "embd_pdrop", "attn_pdrop")
    classifier = "transformer.wte"  # the head is the tied token embedding (no lm_head of its own)

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # the MLP's width; None: 4 * n_embd
    activation_function: str = "gelu_new"  # see ACTIVATIONS
    resid_pdrop: float = 0.1  # after each block's attention and MLP output
    embd_pdrop: float = 0.1  # on token + position embeddings
    attn_pdrop: float = 0.1  # on the attention weights
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02  # std of the normal weights
    scale_attn_weights: bool = True  # scores times D^-0.5
    scale_attn_by_inverse_layer_idx: bool = False  # scores of block i also divided by i + 1
    seq_len: int = 1024  # example length for checks and benchmarks, <= n_positions

    def __post_init__(self):
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "seq_len"):
            self._positive_int(name)
        self._require(self.n_embd % self.n_head == 0, "n_embd", f"a multiple of n_head ({self.n_head})")
        self._require(self.n_inner is None or (isinstance(self.n_inner, int) and not isinstance(self.n_inner, bool)
                                               and self.n_inner > 0), "n_inner", "None or a positive int")
        self._choice("activation_function", tuple(ACTIVATIONS))
        for name in self.stochastic_fields:
            self._probability(name)
        self._positive_float("layer_norm_epsilon")
        self._positive_float("initializer_range")
        for name in ("scale_attn_weights", "scale_attn_by_inverse_layer_idx"):
            self._require(isinstance(getattr(self, name), bool), name, "a bool")
        self._require(self.seq_len <= self.n_positions, "seq_len",
                      f"at most n_positions ({self.n_positions}), the positions table")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return 4 * self.n_embd if self.n_inner is None else self.n_inner

    @property
    def activation(self) -> str:
        """parity's name of the MLP activation (what each framework's activations.py builds)."""
        return ACTIVATIONS[self.activation_function]

    @property
    def num_classes(self) -> int:  # what a cross-entropy target indexes
        return self.vocab_size

    @property
    def input_shape(self):
        return (self.seq_len,)

    def attention_scale(self, layer_idx: int) -> float:
        """The factor of block `layer_idx`'s scores, as transformers' GPT2Attention.scaling."""
        scale = self.head_dim ** -0.5 if self.scale_attn_weights else 1.0
        return scale / float(layer_idx + 1) if self.scale_attn_by_inverse_layer_idx else scale

    def layout(self):
        """GPT2LMHeadModel's state_dict() names without the `lm_head.weight` alias. Conv1D weights
        are (in, out) (kind `conv1d`); `steps` (FLOP count): each runs on every position, and no
        weight reads the model's input directly (the embeddings need their gradients)."""
        C, I, T = self.n_embd, self.inner_dim, self.seq_len
        std = self.initializer_range
        residual_std = std / math.sqrt(2 * self.n_layer)

        def conv1d(prefix: str, nx: int, nf: int, weight_std: float) -> dict[str, Param]:
            return {f"{prefix}.weight": Param((nx, nf), "conv1d", "normal",
                                              meta={"std": weight_std, "steps": T, "reads_model_input": False}),
                    f"{prefix}.bias": Param((nf,), "vector", "zeros")}

        def layer_norm(prefix: str) -> dict[str, Param]:
            return {f"{prefix}.weight": Param((C,), "vector", "norm_weight"),
                    f"{prefix}.bias": Param((C,), "vector", "norm_bias")}

        entries = {"transformer.wte.weight": Param((self.vocab_size, C), "embedding", "normal", meta={"std": std}),
                   "transformer.wpe.weight": Param((self.n_positions, C), "embedding", "normal", meta={"std": std})}
        for i in range(self.n_layer):
            block = f"transformer.h.{i}"
            entries.update(layer_norm(f"{block}.ln_1"))
            entries.update(conv1d(f"{block}.attn.c_attn", C, 3 * C, std))
            entries.update(conv1d(f"{block}.attn.c_proj", C, C, residual_std))
            entries.update(layer_norm(f"{block}.ln_2"))
            entries.update(conv1d(f"{block}.mlp.c_fc", C, I, std))
            entries.update(conv1d(f"{block}.mlp.c_proj", I, C, residual_std))
        entries.update(layer_norm("transformer.ln_f"))
        return entries

    def tied_weights(self):
        return {"lm_head.weight": "transformer.wte.weight"}

    def activation_matmuls(self):
        """Per example (parity.flops): every block's scores q k^T and context weights v over the
        full T x T square (the mask is added, not skipped: T x T x C MACs each, both operands need
        their gradients), and the tied head ln_f(x) wte^T (T x C x V; the "weight" is wte)."""
        T, C, V = self.seq_len, self.n_embd, self.vocab_size
        square = T * T * C
        matmuls = []
        for i in range(self.n_layer):
            matmuls += [(f"transformer.h.{i}.attn.scores", square, square),
                        (f"transformer.h.{i}.attn.context", square, square)]
        return matmuls + [("lm_head", T * C * V, T * C * V)]

    def declared_inputs(self):
        return {
            "input_ids": TensorDecl(("B", "T"), "int", high=self.vocab_size, meaning="token ids (the vocabulary)"),
            "attention_mask": TensorDecl(("B", "T"), "mask",
                                         meaning="1 = attend, 0 = padding (transformers' polarity)"),
        }

    def declared_outputs(self):
        return {"logits": ("B", "T", self.vocab_size)}

    def axis_limits(self):
        return {"T": (self.n_positions, "n_positions")}

    def declared_targets(self):
        return TensorDecl(("B", "T"), "int", high=self.vocab_size, meaning="next-token ids (the vocabulary)")

    def example_inputs(self, rng, batch_size, dtype):
        """`seq_len` random ids, an attention_mask whose first row is all ones and whose later rows
        are right-padded after a random length in [1, seq_len] (no query row is fully masked), and
        next-token targets: the ids shifted left by one, then a random id."""
        T = self.seq_len
        input_ids = rng.integers(0, self.vocab_size, (batch_size, T))
        lengths = rng.integers(1, T + 1, batch_size)
        lengths[0] = T
        attention_mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        targets = np.concatenate([input_ids[:, 1:], rng.integers(0, self.vocab_size, (batch_size, 1))], axis=1)
        return {"input_ids": input_ids, "attention_mask": attention_mask}, targets
