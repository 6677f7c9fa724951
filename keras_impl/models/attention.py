"""Multi-head attention with torch.nn.MultiheadAttention's weights and semantics (the equations are
in parity/specs/attention.py): the `mha` model and every attention inside the Transformer.

A layer of its own, not keras.layers.MultiHeadAttention, which can compute the same function
(tests/test_attention.py runs it on `parity.layouts.keras_native_mha`'s split weights) but not hold
the canonical state or give its gradients:
- torch packs the q, k, v projections into one `in_proj_weight` (3E, E), one tensor with one
  gradient; Keras holds three EinsumDense kernels (E, H, D) and biases (H, D);
- its `attention_mask` has the opposite polarity (True = attend; torch's True = masked out);
- it fills masked scores with -1e9 and zeroes a fully masked row's weights after the softmax
  (the output is then out_proj's bias alone), where torch fills with -inf and that row is NaN;
- it returns per-head scores (B, H, L, S); torch averages them over the heads.
This layer holds `in_proj_weight` as one (E, 3E) variable (the `linear` layout: torch's transposed),
fills with -inf and keeps torch's NaN for a row with nothing to attend to.
"""
import math

import keras
from keras import ops


def scaled_dot_product_attention(q, k, v, mask, dropout=None):  # (B, H, L, D), (B, H, S, D) x2, (B|1, 1, L, S)
    """softmax(q k^T / sqrt(D)) v over the allowed keys (`mask` True = attend, or None). A masked
    score is -inf, torch's fill: its weight is exactly 0 and a row with nothing allowed is NaN,
    where a large finite fill (Keras' -1e9, Flax's finfo.min) would give that row uniform weights.
    `dropout` (training) drops weights after the softmax. -> context (B, H, L, D), weights (B, H, L, S)"""
    scores = ops.matmul(q * math.sqrt(1.0 / q.shape[-1]), ops.swapaxes(k, -2, -1))  # (B, H, L, S)
    if mask is not None:
        scores = ops.where(mask, scores, float("-inf"))
    weights = ops.softmax(scores, axis=-1)  # (B, H, L, S)
    if dropout is not None:
        weights = dropout(weights)
    return ops.matmul(weights, v), weights  # (B, H, L, D), (B, H, L, S)


def allowed_positions(key_padding_mask, attn_mask):  # (B, S) bool or None, (L, S) bool or None
    """torch's two masks (True = masked out) as one mask of the allowed (query, key) pairs
    (True = attend), shaped to broadcast over the heads. -> (B, 1, L, S), (1, 1, L, S) or None
    (expand_dims, not [:, None]: TFLite has no strided slice of bool tensors with new axes)."""
    allowed = None
    if key_padding_mask is not None:
        allowed = ops.expand_dims(ops.logical_not(key_padding_mask), (1, 2))  # (B, 1, 1, S)
    if attn_mask is not None:
        keep = ops.expand_dims(ops.logical_not(attn_mask), (0, 1))  # (1, 1, L, S)
        allowed = keep if allowed is None else ops.logical_and(allowed, keep)  # (B, 1, L, S)
    return allowed


def self_or_cross(query, key, value, key_padding_mask):  # (B, L, E), (B, S, E) or None x2, (B, S) or None
    """The keys and values a call attends over: `key` absent means self-attention on `query`,
    `value` absent means the key. -> key (B, S, E), value (B, S, E)"""
    if key is None and value is not None:
        raise ValueError("mha: got `value` without `key`; give both (cross-attention) or neither "
                         "(self-attention on `query`)")
    key = query if key is None else key
    value = key if value is None else value
    if key_padding_mask is not None and key_padding_mask.shape[-1] != key.shape[1]:
        raise ValueError(f"mha: key_padding_mask has {key_padding_mask.shape[-1]} key positions, the keys have "
                         f"{key.shape[1]} (the query's length when `key` is absent)")
    return key, value


class MultiheadAttention(keras.layers.Layer):
    """torch.nn.MultiheadAttention(batch_first=True), kdim = vdim = embed_dim: `in_proj_weight`
    (E, 3E) and `in_proj_bias` (3E,) as single variables (initialised as torch does: xavier-uniform,
    zeros), `out_proj` a Dense. Called as torch's: (query, key, value, key_padding_mask,
    need_weights, attn_mask) -> (output (B, L, E), head-averaged weights or None)."""

    def __init__(self, embed_dim, num_heads, dropout, bias, dtype):
        super().__init__(dtype=dtype)
        self.num_heads = num_heads
        self.in_proj_weight = self.add_weight(shape=(embed_dim, 3 * embed_dim), initializer="glorot_uniform",
                                              name="in_proj_weight")
        self.in_proj_bias = self.add_weight(shape=(3 * embed_dim,), initializer="zeros",
                                            name="in_proj_bias") if bias else None
        self.out_proj = keras.layers.Dense(embed_dim, use_bias=bias, dtype=dtype)
        self.dropout = keras.layers.Dropout(dropout, dtype=dtype)
        # Its own variables exist; the Dense builds on its first call (an unbuilt layer is traced
        # symbolically by Keras to build its children, once per nesting level).
        self.built = True

    def in_projection(self, query, key, value):  # (B, L, E), (B, S, E), (B, S, E)
        """The thirds of the packed projection: q, k, v = x W^T + b. -> (B, L, E), (B, S, E), (B, S, E)"""
        weights = ops.split(self.in_proj_weight, 3, axis=-1)  # 3 x (E, E)
        biases = ops.split(self.in_proj_bias, 3) if self.in_proj_bias is not None else (None, None, None)
        return tuple(ops.matmul(x, w) if b is None else ops.matmul(x, w) + b
                     for x, w, b in zip((query, key, value), weights, biases))

    def split_heads(self, x):  # (B, N, E)
        batch, length, embed = ops.shape(x)
        heads = ops.reshape(x, (batch, length, self.num_heads, embed // self.num_heads))  # (B, N, H, D)
        return ops.transpose(heads, (0, 2, 1, 3))  # (B, H, N, D)

    def call(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, training=False):
        q, k, v = (self.split_heads(x) for x in self.in_projection(query, key, value))  # (B, H, L|S, D)
        context, weights = scaled_dot_product_attention(q, k, v, allowed_positions(key_padding_mask, attn_mask),
                                                        lambda w: self.dropout(w, training=training))
        batch, heads, length, head_dim = ops.shape(context)
        merged = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, heads * head_dim))  # (B, L, E)
        return self.out_proj(merged), ops.mean(weights, axis=1) if need_weights else None  # (B, L, E), (B, L, S)


class MHA(MultiheadAttention):
    """The `mha` model: one MultiheadAttention, named inputs in, {"output", "weights"} out."""

    def __init__(self, spec, dtype):
        super().__init__(spec.embed_dim, spec.num_heads, spec.dropout, spec.bias, dtype)
        self.spec = spec

    def call(self, query, key=None, value=None, key_padding_mask=None, attn_mask=None, training=False):
        key, value = self_or_cross(query, key, value, key_padding_mask)  # (B, S, E) each
        output, weights = super().call(query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                                       attn_mask=attn_mask, training=training)  # (B, L, E), (B, L, S)
        return {"output": output, "weights": weights}
