"""Multi-head attention with torch.nn.MultiheadAttention's weights and semantics (the equations are
in parity/specs/attention.py): the `mha` model and every attention inside the Transformer.

A module of its own, not nnx.MultiHeadAttention, which can compute the same function
(tests/test_attention.py runs it on `parity.layouts.flax_native_mha`'s split weights) but not hold
the canonical state or give its outputs:
- torch packs the q, k, v projections into one `in_proj_weight` (3E, E), one tensor with one
  gradient; Flax holds three LinearGeneral kernels (E, H, D) and biases (H, D);
- its `mask` has the opposite polarity (True = attend; torch's True = masked out);
- it fills masked scores with finfo(dtype).min, so a fully masked row gets uniform weights, where
  torch fills with -inf and that row is NaN;
- it returns no attention weights (only sown as an intermediate), and its attention dropout is
  broadcast over the batch and the heads by default (torch drops every weight independently).
This module holds `in_proj_weight` as one (E, 3E) Param (the `linear` layout: torch's transposed),
fills with -inf and keeps torch's NaN for a row with nothing to attend to.
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx


def scaled_dot_product_attention(q, k, v, mask, dropout=None):  # (B, H, L, D), (B, H, S, D) x2, (B|1, 1, L, S)
    """softmax(q k^T / sqrt(D)) v over the allowed keys (`mask` True = attend, or None). A masked
    score is -inf, torch's fill: its weight is exactly 0 and a row with nothing allowed is NaN,
    where a large finite fill (Keras' -1e9, Flax's finfo.min) would give that row uniform weights.
    `dropout` (training) drops weights after the softmax. -> context (B, H, L, D), weights (B, H, L, S)"""
    scores = jnp.matmul(q * math.sqrt(1.0 / q.shape[-1]), jnp.swapaxes(k, -2, -1))  # (B, H, L, S)
    if mask is not None:
        # -inf in the scores' dtype: given a Python -inf, jax2onnx (which traces under x64 when a
        # model takes int64 ids) casts the scores to float64 and writes an invalid graph (measured).
        scores = jnp.where(mask, scores, jnp.asarray(-jnp.inf, scores.dtype))
    weights = jax.nn.softmax(scores, axis=-1)  # (B, H, L, S)
    if dropout is not None:
        weights = dropout(weights)
    return jnp.matmul(weights, v), weights  # (B, H, L, D), (B, H, L, S)


def allowed_positions(key_padding_mask, attn_mask):  # (B, S) bool or None, (L, S) bool or None
    """torch's two masks (True = masked out) as one mask of the allowed (query, key) pairs
    (True = attend), shaped to broadcast over the heads. -> (B, 1, L, S), (1, 1, L, S) or None"""
    allowed = None
    if key_padding_mask is not None:
        allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
    if attn_mask is not None:
        allowed = ~attn_mask[None, None] if allowed is None else allowed & ~attn_mask[None, None]  # (B, 1, L, S)
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


class MultiheadAttention(nnx.Module):
    """torch.nn.MultiheadAttention(batch_first=True), kdim = vdim = embed_dim: `in_proj_weight`
    (E, 3E) and `in_proj_bias` (3E,) as single Params (initialised as torch does: xavier-uniform,
    zeros), `out_proj` an nnx.Linear. Called as torch's: (query, key, value, key_padding_mask,
    need_weights, attn_mask) -> (output (B, L, E), head-averaged weights or None)."""

    def __init__(self, embed_dim, num_heads, dropout, bias, dtype, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.in_proj_weight = nnx.Param(nnx.initializers.xavier_uniform()(rngs.params(), (embed_dim, 3 * embed_dim),
                                                                          dtype))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,), dtype)) if bias else None
        self.out_proj = nnx.Linear(embed_dim, embed_dim, use_bias=bias, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def in_projection(self, query, key, value):  # (B, L, E), (B, S, E), (B, S, E)
        """The thirds of the packed projection: q, k, v = x W^T + b. -> (B, L, E), (B, S, E), (B, S, E)"""
        weights = jnp.split(self.in_proj_weight[...], 3, axis=-1)  # 3 x (E, E)
        biases = jnp.split(self.in_proj_bias[...], 3) if self.in_proj_bias is not None else (None, None, None)
        return tuple(jnp.matmul(x, w) if b is None else jnp.matmul(x, w) + b
                     for x, w, b in zip((query, key, value), weights, biases))

    def split_heads(self, x):  # (B, N, E)
        batch, length, embed = x.shape
        heads = jnp.reshape(x, (batch, length, self.num_heads, embed // self.num_heads))  # (B, N, H, D)
        return jnp.transpose(heads, (0, 2, 1, 3))  # (B, H, N, D)

    def __call__(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None):
        q, k, v = (self.split_heads(x) for x in self.in_projection(query, key, value))  # (B, H, L|S, D)
        context, weights = scaled_dot_product_attention(q, k, v, allowed_positions(key_padding_mask, attn_mask),
                                                        self.dropout)
        batch, heads, length, head_dim = context.shape
        merged = jnp.reshape(jnp.transpose(context, (0, 2, 1, 3)), (batch, length, heads * head_dim))  # (B, L, E)
        return self.out_proj(merged), jnp.mean(weights, axis=1) if need_weights else None  # (B, L, E), (B, L, S)


class MHA(MultiheadAttention):
    """The `mha` model: one MultiheadAttention, named inputs in, {"output", "weights"} out."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        super().__init__(spec.embed_dim, spec.num_heads, spec.dropout, spec.bias, dtype, rngs=rngs)
        self.spec = spec

    def __call__(self, query, key=None, value=None, key_padding_mask=None, attn_mask=None):  # (B, L, E), (B, S, E) x2
        key, value = self_or_cross(query, key, value, key_padding_mask)  # (B, S, E) each
        output, weights = super().__call__(query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                                           attn_mask=attn_mask)  # (B, L, E), (B, L, S)
        return {"output": output, "weights": weights}
