"""Multi-head attention: torch.nn.MultiheadAttention itself, the reference of the `mha` spec and of
every attention inside the Transformer (parity/specs/attention.py has the equations).

The model runs torch's own module. `scaled_dot_product_attention` and `allowed_positions` write out
what it computes inside (F.multi_head_attention_forward with need_weights=True), for reading beside
the Keras and Flax files, which run exactly that; tests/test_attention.py checks them against the
module. What torch does, measured on torch 2.13 CPU:

- Masks are bool with True = masked out (`key_padding_mask` (B, S): ignore that key;
  `attn_mask` (L, S): query i may not attend to key j); both become -inf added to the scores.
- A query row with every key masked is NaN (softmax over -inf alone) in the output and the
  weights, on the fast path (eval, no grad, self-attention, an even head count:
  torch._native_multi_head_attention) and the slow one alike, whenever the weights are asked for.
  With need_weights=False on the slow path (what torch.nn.Transformer's layers ask), torch goes
  through F.scaled_dot_product_attention instead, whose fully masked row is 0 (the output is then
  out_proj.bias): parity's models always ask for the weights, and keep the NaN.
- The queries are scaled by sqrt(1 / D) before q k^T; in training, dropout drops attention
  weights, and the returned weights are the dropped ones.
"""
import math

import torch
from torch import nn


def scaled_dot_product_attention(q, k, v, mask, dropout=None):  # (B, H, L, D), (B, H, S, D) x2, (B|1, 1, L, S)
    """softmax(q k^T / sqrt(D)) v over the allowed keys (`mask` True = attend, or None). A masked
    score is -inf, torch's fill: its weight is exactly 0 and a row with nothing allowed is NaN,
    where a large finite fill (Keras' -1e9, Flax's finfo.min) would give that row uniform weights.
    `dropout` (training) drops weights after the softmax. -> context (B, H, L, D), weights (B, H, L, S)"""
    scores = torch.matmul(q * math.sqrt(1.0 / q.shape[-1]), k.transpose(-2, -1))  # (B, H, L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, L, S)
    if dropout is not None:
        weights = dropout(weights)
    return torch.matmul(weights, v), weights  # (B, H, L, D), (B, H, L, S)


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


class MultiheadAttention(nn.MultiheadAttention):
    """torch.nn.MultiheadAttention(batch_first=True), kdim = vdim = embed_dim: the reference itself
    (in_proj_weight (3E, E), in_proj_bias, out_proj). Called as torch's: (query, key, value,
    key_padding_mask, need_weights, attn_mask) -> (output (B, L, E), head-averaged weights or None)."""

    def __init__(self, embed_dim, num_heads, dropout, bias, dtype):
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=True, dtype=dtype)


class MHA(MultiheadAttention):
    """The `mha` model: one MultiheadAttention, named inputs in, {"output", "weights"} out."""

    def __init__(self, spec, dtype):
        super().__init__(spec.embed_dim, spec.num_heads, spec.dropout, spec.bias, dtype)
        self.spec = spec

    def forward(self, query, key=None, value=None, key_padding_mask=None, attn_mask=None):  # (B, L, E), (B, S, E) x2
        key, value = self_or_cross(query, key, value, key_padding_mask)  # (B, S, E) each
        output, weights = super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=True,
                                          attn_mask=attn_mask, average_attn_weights=True)  # (B, L, E), (B, L, S)
        return {"output": output, "weights": weights}
