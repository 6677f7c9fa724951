"""GPT-2 with transformers' GPT2LMHeadModel names and semantics (eager attention); the equations,
the mask and its pitfalls are in parity/specs/gpt2.py.

Classes and attributes are transformers' (`transformer.h.{i}.attn.c_attn`, ...), so its
state_dict() loads as it is. Two differences, both about holding the canonical state once:
- no `lm_head` module: transformers ties an nn.Linear to `wte` (one tensor, two state-dict names);
  here the head is `F.linear(x, wte.weight)`, the same matmul, and the weight has one name;
- no causal-mask buffer: the mask is built per call (as transformers 5 does).

The KV cache (`init_cache`, `decode`) keeps static shapes: preallocated (B, H, max_len, D)
buffers per layer, written in place at `position` with index_copy_ (transformers' StaticCache
does the same), attention over all max_len slots with the unwritten ones masked.
"""
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_impl.activations import activation


def attention_bias(query_positions, key_positions, attention_mask, dtype):  # (t,), (S,), (B, S) or None
    """transformers' eager mask, to be ADDED to the scores: 0 where query i may attend to key j (j at
    or before i's position and not padding), finfo(dtype).min elsewhere (finite: a fully masked row
    gets a uniform softmax, not NaN). -> (B|1, 1, t, S)"""
    allowed = key_positions[None, :] <= query_positions[:, None]  # (t, S)
    if attention_mask is None:
        allowed = allowed[None]  # (1, t, S)
    else:
        allowed = allowed[None] & (attention_mask[:, None, :] != 0)  # (B, t, S)
    bias = torch.where(allowed, torch.zeros((), dtype=dtype, device=allowed.device), torch.finfo(dtype).min)
    return bias[:, None]  # (B|1, 1, t, S)


class Conv1D(nn.Module):
    """transformers' Conv1D: a Linear whose weight is stored (in, out) = (nx, nf), computing
    x @ W + b with addmm (torch.nn.Linear stores (out, in) and could not load the weight as it is)."""

    def __init__(self, nf, nx, dtype):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(nf, dtype=dtype))

    def forward(self, x):  # (..., nx)
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)  # (N, nf)
        return x.view(size_out)  # (..., nf)


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention: c_attn packs q, k, v as (C, 3C); scores times the spec's
    scale plus the additive mask, softmax, dropout, weights times v, heads merged, c_proj."""

    def __init__(self, spec, layer_idx, dtype):
        super().__init__()
        self.num_heads = spec.n_head
        self.head_dim = spec.head_dim
        self.split_size = spec.n_embd
        self.scaling = spec.attention_scale(layer_idx)
        self.c_attn = Conv1D(3 * spec.n_embd, spec.n_embd, dtype)
        self.c_proj = Conv1D(spec.n_embd, spec.n_embd, dtype)
        self.attn_dropout = nn.Dropout(spec.attn_pdrop)
        self.resid_dropout = nn.Dropout(spec.resid_pdrop)

    def split_heads(self, x):  # (B, t, C)
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, t, D)

    def forward(self, hidden_states, bias, layer_cache=None, slots=None):  # (B, t, C), (B|1, 1, t, S)
        """Without a cache the keys are these t positions (S = t); with one, (key, value) buffers
        (B, H, max_len, D) get this call's keys and values at `slots` (t,) and all max_len are
        attended (S = max_len). -> (B, t, C), the updated (key, value) or None"""
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)  # 3 x (B, t, C)
        query, key, value = self.split_heads(query), self.split_heads(key), self.split_heads(value)  # (B, H, t, D)
        if layer_cache is not None:
            key = layer_cache[0].index_copy_(2, slots, key)  # (B, H, S, D), in place
            value = layer_cache[1].index_copy_(2, slots, value)
            layer_cache = (key, value)
        scores = torch.matmul(query, key.transpose(-1, -2)) * self.scaling + bias  # (B, H, t, S)
        weights = self.attn_dropout(F.softmax(scores, dim=-1))  # (B, H, t, S)
        context = torch.matmul(weights, value).transpose(1, 2)  # (B, t, H, D)
        context = context.reshape(*context.shape[:-2], -1)  # (B, t, C)
        return self.resid_dropout(self.c_proj(context)), layer_cache


class GPT2MLP(nn.Module):
    """c_fc (C, I), the spec's activation (GPT-2: GELU's tanh approximation), c_proj (I, C), dropout."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.c_fc = Conv1D(spec.inner_dim, spec.n_embd, dtype)
        self.c_proj = Conv1D(spec.n_embd, spec.inner_dim, dtype)
        self.act = activation(spec.activation)
        self.dropout = nn.Dropout(spec.resid_pdrop)

    def forward(self, hidden_states):  # (B, t, C)
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))  # (B, t, C)


def layer_norm(spec, dtype):
    """torch.nn.LayerNorm(n_embd, eps): the spec's eps (transformers' layer_norm_epsilon)."""
    return nn.LayerNorm(spec.n_embd, eps=spec.layer_norm_epsilon, dtype=dtype)


class GPT2Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, spec, layer_idx, dtype):
        super().__init__()
        self.ln_1 = layer_norm(spec, dtype)
        self.attn = GPT2Attention(spec, layer_idx, dtype)
        self.ln_2 = layer_norm(spec, dtype)
        self.mlp = GPT2MLP(spec, dtype)

    def forward(self, hidden_states, bias, layer_cache=None, slots=None):  # (B, t, C)
        attn_output, layer_cache = self.attn(self.ln_1(hidden_states), bias, layer_cache, slots)
        hidden_states = attn_output + hidden_states
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, layer_cache  # (B, t, C)


class GPT2Model(nn.Module):
    """Token plus position embeddings, dropout, the blocks, the final LayerNorm ln_f."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.wte = nn.Embedding(spec.vocab_size, spec.n_embd, dtype=dtype)
        self.wpe = nn.Embedding(spec.n_positions, spec.n_embd, dtype=dtype)
        self.drop = nn.Dropout(spec.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(spec, i, dtype) for i in range(spec.n_layer))
        self.ln_f = layer_norm(spec, dtype)

    def forward(self, input_ids, attention_mask=None, cache=None, position=0):  # (B, t), (B, t) or None
        """Positions position .. position + t - 1. Without a cache the t positions attend to each
        other; with one (a (key, value) per block) they attend to its max_len slots, the ones at or
        after a query's position masked. -> (B, t, C), the updated cache or None"""
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device) + position  # (t,)
        hidden_states = self.wte(input_ids) + self.wpe(positions)  # (B, t, C)
        keys = positions if cache is None else torch.arange(cache[0][0].shape[2], device=input_ids.device)  # (S,)
        bias = attention_bias(positions, keys, attention_mask, hidden_states.dtype)  # (B|1, 1, t, S)
        hidden_states = self.drop(hidden_states)
        new_cache = []
        for i, block in enumerate(self.h):
            hidden_states, layer_cache = block(hidden_states, bias, None if cache is None else cache[i], positions)
            new_cache.append(layer_cache)
        return self.ln_f(hidden_states), None if cache is None else tuple(new_cache)  # (B, t, C)


class GPT2LMHeadModel(nn.Module):
    """GPT2Model under `transformer`, and the tied head: logits = ln_f(x) wte^T."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.transformer = GPT2Model(spec, dtype)

    def forward(self, input_ids, attention_mask=None):  # (B, T), (B, T) or None
        hidden_states, _ = self.transformer(input_ids, attention_mask)  # (B, T, C)
        return {"logits": F.linear(hidden_states, self.transformer.wte.weight)}  # (B, T, vocab_size)

    def init_cache(self, batch, max_len):
        """Zeroed key and value buffers (B, H, max_len, D) for every block, on the model's device."""
        weight = self.transformer.wte.weight
        shape = (batch, self.spec.n_head, max_len, self.spec.head_dim)
        return tuple((torch.zeros(shape, dtype=weight.dtype, device=weight.device),
                      torch.zeros(shape, dtype=weight.dtype, device=weight.device)) for _ in range(self.spec.n_layer))

    def decode(self, input_ids, cache, position):  # (B, t), init_cache's buffers, int or 0-d tensor
        """The logits of ids at positions position .. position + t - 1, attending to the cache's
        earlier slots: their keys and values are written into the cache (in place: the returned
        cache is the same buffers). -> logits (B, t, vocab_size), cache"""
        hidden_states, cache = self.transformer(input_ids, cache=cache, position=position)  # (B, t, C)
        return F.linear(hidden_states, self.transformer.wte.weight), cache  # (B, t, vocab_size)
