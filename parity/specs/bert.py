"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding") with the canonical weights and semantics of Hugging Face transformers' `BertModel`
(head "none") and `BertForMaskedLM` (head "mlm"); field names are `BertConfig`'s, so
`parity.spec("bert", **BertConfig(...).to_dict())` gives the same model.

With H = hidden_size, n heads of d = H / n, every LayerNorm over H with eps `layer_norm_eps`:

    x        = LayerNorm(E_word[ids] + E_type[types] + E_pos[0..T-1]), dropout     (`embeddings`)
    per layer (`encoder.layer.{i}`), post-norm:
      q, k, v  = x W_q^T + b_q, ...                       split into n heads  (`attention.self`)
      scores   = (q k^T) / sqrt(d) + m                     m: 0 where attention_mask is 1,
                                                           finfo(dtype).min where it is 0
      context  = dropout(softmax(scores)) v                merged back to (B, T, H)
      x        = LayerNorm(dropout(context W_o^T + b_o) + x)                   (`attention.output`)
      x        = LayerNorm(dropout(act(x W_1^T + b_1) W_2^T + b_2) + x)   (`intermediate`, `output`)
    last_hidden_state = x                                                               (B, T, H)
    pooler_output     = tanh(x[:, 0] W_p^T + b_p)                           (`pooler.dense`, (B, H))
    logits (mlm)      = LayerNorm(act(x W_t^T + b_t)) E_word^T + bias
                        (`cls.predictions.transform`, the decoder tied to the word embeddings,
                         `cls.predictions.bias`)                                        (B, T, V)

`act` is `hidden_act`: "gelu" exact (erf; BERT's), "gelu_new" the tanh approximation, "relu".
The mask is Hugging Face's extended attention mask: a finite fill (the dtype's minimum) added to
the scores, not -inf. A padded key gets weight exactly 0 next to any valid one; a query whose
every key is masked (an all-zero mask row) gets scores all equal to finfo.min, so its softmax is
uniform over all T keys, padding included: finite, the mean of the values (transformers' eager
attention; its default "sdpa" gives that row a context of zeros instead, tests/test_bert.py).

Inputs: `input_ids` (B, T), `attention_mask` (B, T) 1 = attend (absent: all ones),
`token_type_ids` (B, T) in [0, type_vocab_size) (absent: zeros), T <= max_position_embeddings.
transformers keeps `embeddings.position_ids` (arange) and `embeddings.token_type_ids` (zeros) as
non-persistent buffers: they are not in its state_dict, so not in the canonical layout; the
models compute them (arange(T), zeros). The word embeddings' `pad_token_id` row is
torch.nn.Embedding's padding_idx: used in the forward pass like any row, its lookups pass no gradient
to it (under the mlm head the tied decoder still does).

Canonical names are the state_dict keys: BertModel's (`embeddings.word_embeddings.weight`, ...,
`pooler.dense.weight`), BertForMaskedLM's under `bert.` (no pooler) plus `cls.predictions.*`.
BertForMaskedLM.state_dict() also holds `cls.predictions.decoder.weight` (the word embeddings) and
`cls.predictions.decoder.bias` (`cls.predictions.bias`): `tied_weights()` aliases, each tensor
is held once here.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from parity.params import Param
from parity.specs.base import IGNORE_INDEX, Spec, TensorDecl

# transformers' activation names (ACT2FN) -> parity's (the impl packages' `activation(name)`).
HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu"}
HEADS = ("none", "mlm")


@dataclasses.dataclass(frozen=True)
class BertSpec(Spec):
    """BertModel (head "none") or BertForMaskedLM (head "mlm"), as the module docstring says.
    Reference preset `bert-base`: bert-base-uncased's sizes (110 M parameters)."""
    architecture = "bert"
    family = "transformers"
    presets = {
        "tiny": {"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 24, "max_position_embeddings": 12, "type_vocab_size": 2, "seq_len": 7,
                 "head": "none"},
        "tiny-mlm": {"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": 24, "max_position_embeddings": 12, "type_vocab_size": 2, "seq_len": 7,
                     "head": "mlm"},
        "bert-base": {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                      "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
                      "seq_len": 128, "head": "none"},
    }
    reference_preset = "bert-base"
    input_kind = "input_ids"
    optional_inputs = ("attention_mask", "token_type_ids")
    stochastic_fields = ("hidden_dropout_prob", "attention_probs_dropout_prob")

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"  # transformers' name: "gelu" (exact erf), "gelu_new" (tanh), "relu"
    hidden_dropout_prob: float = 0.1  # embeddings, attention output, feed-forward output
    attention_probs_dropout_prob: float = 0.1  # the attention weights
    max_position_embeddings: int = 512  # rows of the positions table: the longest input
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12  # every LayerNorm (torch's default is 1e-5, Keras' 1e-3, Flax's 1e-6)
    initializer_range: float = 0.02  # std of the normal init of every Linear and Embedding weight
    pad_token_id: int | None = 0  # the word embeddings' padding_idx (no gradient); None: no such row
    seq_len: int = 128  # T of examples and benchmarks; the model takes any T <= max_position_embeddings
    head: str = "none"  # "none": BertModel; "mlm": BertForMaskedLM

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "seq_len"):
            self._positive_int(name)
        self._require(self.hidden_size % self.num_attention_heads == 0, "hidden_size",
                      f"a multiple of num_attention_heads ({self.num_attention_heads})")
        self._choice("hidden_act", tuple(HIDDEN_ACTS))
        self._probability("hidden_dropout_prob")
        self._probability("attention_probs_dropout_prob")
        self._positive_float("layer_norm_eps")
        self._positive_float("initializer_range")
        self._require(self.pad_token_id is None or (isinstance(self.pad_token_id, int)
                                                    and not isinstance(self.pad_token_id, bool)
                                                    and 0 <= self.pad_token_id < self.vocab_size),
                      "pad_token_id", f"None or an int in [0, vocab_size = {self.vocab_size})")
        self._require(self.seq_len <= self.max_position_embeddings, "seq_len",
                      f"at most max_position_embeddings ({self.max_position_embeddings})")
        self._choice("head", HEADS)

    # What depends on the head: BertModel's two outputs, or BertForMaskedLM's logits.
    @property
    def output_names(self) -> tuple[str, ...]:
        return ("last_hidden_state", "pooler_output") if self.head == "none" else ("logits",)

    @property
    def loss(self) -> str:
        """BertModel has no loss of its own: the mean squared error of last_hidden_state, for
        gradient checks. BertForMaskedLM's: cross-entropy over the labels that are not -100 (its
        CrossEntropyLoss's ignore_index), the mean over the counted ones."""
        return "mse" if self.head == "none" else "masked_cross_entropy"

    @property
    def loss_output(self) -> str:
        return "last_hidden_state" if self.head == "none" else "logits"

    @property
    def classifier(self) -> str:
        return "pooler" if self.head == "none" else "cls"

    @property
    def num_classes(self) -> int:  # what a cross-entropy target indexes
        return self.vocab_size

    @property
    def activation(self) -> str:
        """`hidden_act` in parity's names (the impl packages' activation functions)."""
        return HIDDEN_ACTS[self.hidden_act]

    @property
    def head_size(self) -> int:
        """d = H / n, each head's width (transformers' attention_head_size)."""
        return self.hidden_size // self.num_attention_heads

    @property
    def prefix(self) -> str:
        """Where BertModel's tensors sit: the top (BertModel) or under `bert.` (BertForMaskedLM)."""
        return "" if self.head == "none" else "bert."

    @property
    def input_shape(self):
        return (self.seq_len,)

    def _linear(self, prefix: str, in_features: int, out_features: int, steps: int, **meta) -> dict[str, Param]:
        """An nn.Linear initialised as transformers' BertPreTrainedModel: weight ~ N(0, initializer_range),
        bias 0. `steps`: the positions it runs on per example (parity.flops); every Linear here
        reads an activation whose gradient is needed (the embeddings have weights)."""
        return {f"{prefix}.weight": Param((out_features, in_features), "linear", "normal",
                                          meta={"std": self.initializer_range, "steps": steps,
                                                "reads_model_input": False, **meta}),
                f"{prefix}.bias": Param((out_features,), "vector", "zeros")}

    def _layer_norm(self, prefix: str) -> dict[str, Param]:
        return {f"{prefix}.weight": Param((self.hidden_size,), "vector", "norm_weight"),
                f"{prefix}.bias": Param((self.hidden_size,), "vector", "norm_bias")}

    def _embedding(self, rows: int) -> Param:
        return Param((rows, self.hidden_size), "embedding", "normal", meta={"std": self.initializer_range})

    def layout(self):
        """transformers' state_dict order. The pooler is left out of the gradient count
        (`off_loss_path`): the loss of head "none" reads last_hidden_state only."""
        H, I, T = self.hidden_size, self.intermediate_size, self.seq_len
        p = self.prefix
        entries = {f"{p}embeddings.word_embeddings.weight": self._embedding(self.vocab_size),
                   f"{p}embeddings.position_embeddings.weight": self._embedding(self.max_position_embeddings),
                   f"{p}embeddings.token_type_embeddings.weight": self._embedding(self.type_vocab_size)}
        entries.update(self._layer_norm(f"{p}embeddings.LayerNorm"))
        for i in range(self.num_hidden_layers):
            layer = f"{p}encoder.layer.{i}"
            for name in ("query", "key", "value"):
                entries.update(self._linear(f"{layer}.attention.self.{name}", H, H, T))
            entries.update(self._linear(f"{layer}.attention.output.dense", H, H, T))
            entries.update(self._layer_norm(f"{layer}.attention.output.LayerNorm"))
            entries.update(self._linear(f"{layer}.intermediate.dense", H, I, T))
            entries.update(self._linear(f"{layer}.output.dense", I, H, T))
            entries.update(self._layer_norm(f"{layer}.output.LayerNorm"))
        if self.head == "none":
            entries.update(self._linear("pooler.dense", H, H, 1, off_loss_path=True))
        else:
            entries["cls.predictions.bias"] = Param((self.vocab_size,), "vector", "zeros")
            entries.update(self._linear("cls.predictions.transform.dense", H, H, T))
            entries.update(self._layer_norm("cls.predictions.transform.LayerNorm"))
        return entries

    def tied_weights(self):
        """BertForMaskedLM.state_dict() (transformers 5.24) holds its decoder's weight and bias
        under their own names too: the word embeddings and cls.predictions.bias, tied."""
        if self.head == "none":
            return {}
        return {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
                "cls.predictions.decoder.bias": "cls.predictions.bias"}

    def activation_matmuls(self):
        """Matmuls between activations, per example (parity.flops): per layer the scores q k^T
        and the context weights v (n heads of T x T x d: T x T x H each), both operands needing
        their gradients; with the mlm head, the decoder against the tied word embeddings (a
        weight, but held as an embedding, which the layout's Linear count does not see)."""
        T, H = self.seq_len, self.hidden_size
        attention = T * T * H
        matmuls = []
        for i in range(self.num_hidden_layers):
            layer = f"{self.prefix}encoder.layer.{i}.attention.self"
            matmuls += [(f"{layer}.scores", attention, attention), (f"{layer}.context", attention, attention)]
        if self.head == "mlm":
            matmuls.append(("cls.predictions.decoder", T * H * self.vocab_size, T * H * self.vocab_size))
        return matmuls

    def declared_inputs(self):
        return {
            "input_ids": TensorDecl(("B", "T"), "int", high=self.vocab_size, meaning="token ids (the vocabulary)"),
            "attention_mask": TensorDecl(("B", "T"), "mask", meaning="attention mask (1 = attend, 0 = padding)"),
            "token_type_ids": TensorDecl(("B", "T"), "int", high=self.type_vocab_size,
                                         meaning="token type ids (segments)"),
        }

    def declared_outputs(self):
        if self.head == "none":
            return {"last_hidden_state": ("B", "T", self.hidden_size), "pooler_output": ("B", self.hidden_size)}
        return {"logits": ("B", "T", self.vocab_size)}

    def axis_limits(self):
        return {"T": (self.max_position_embeddings, "max_position_embeddings")}

    def declared_targets(self):
        if self.head == "none":
            return TensorDecl(("B", "T", self.hidden_size), "float", meaning="targets of last_hidden_state")
        return TensorDecl(("B", "T"), "int", high=self.vocab_size, ignore_index=IGNORE_INDEX,
                          meaning="masked-LM labels (token ids)")

    def example_inputs(self, rng, batch_size, dtype):
        """`seq_len` random ids; the first row unpadded, every later one right-padded after a random
        length in [1, T - 1] (mask 0 there, ids `pad_token_id`); random token types everywhere.
        Targets: standard-normal for last_hidden_state, or labels at ~half of the unpadded
        positions (the first always) and -100 (ignored) elsewhere, as a masked-LM batch has them."""
        T = self.seq_len
        input_ids = rng.integers(0, self.vocab_size, (batch_size, T))
        lengths = np.full(batch_size, T)
        if T > 1:
            lengths[1:] = rng.integers(1, T, batch_size - 1)
        attention_mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
        if self.pad_token_id is not None:
            input_ids[attention_mask == 0] = self.pad_token_id
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
                  "token_type_ids": rng.integers(0, self.type_vocab_size, (batch_size, T))}
        if self.head == "none":
            return inputs, rng.standard_normal((batch_size, T, self.hidden_size)).astype(dtype)
        labels = rng.integers(0, self.vocab_size, (batch_size, T))
        counted = (attention_mask == 1) & (rng.random((batch_size, T)) < 0.5)
        counted[0, 0] = True
        return inputs, np.where(counted, labels, IGNORE_INDEX)
