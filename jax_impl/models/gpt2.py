"""GPT-2 with transformers' GPT2LMHeadModel names and semantics (eager attention); the equations,
the mask and its pitfalls are in parity/specs/gpt2.py.

Modules are named after transformers' (`transformer.h.{i}.attn.c_attn`, ...). Its Conv1D weight
is (in, out), which is already an nnx.Linear kernel: Conv1D here IS an nnx.Linear, and the
weights load without a transpose (layout kind `conv1d`). The tied head is nnx.Embed's own
`attend` (x wte^T). nnx.LayerNorm gets the spec's eps explicitly (Flax's default is 1e-6) and
use_fast_variance=False (torch's mean((x - mean)^2), not the cancellation-prone E[x^2] - E[x]^2);
GELU's approximation is passed explicitly by jax_impl.activations (jax.nn.gelu's default is tanh).

The KV cache (`init_cache`, `decode`) keeps static shapes: preallocated (B, H, max_len, D)
buffers per layer, written at `position` with lax.dynamic_update_slice (a traced position: one
compiled step serves every position), attention over all max_len slots with the unwritten ones
masked.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.activations import activation


def attention_bias(query_positions, key_positions, attention_mask, dtype):  # (t,), (S,), (B, S) or None
    """transformers' eager mask, to be ADDED to the scores: 0 where query i may attend to key j (j at
    or before i's position and not padding), finfo(dtype).min elsewhere (finite: a fully masked row
    gets a uniform softmax, not NaN). -> (B|1, 1, t, S)"""
    allowed = key_positions[None, :] <= query_positions[:, None]  # (t, S)
    if attention_mask is None:
        allowed = allowed[None]  # (1, t, S)
    else:
        allowed = allowed[None] & (attention_mask[:, None, :] != 0)  # (B, t, S)
    bias = jnp.where(allowed, jnp.zeros((), dtype), jnp.asarray(jnp.finfo(dtype).min, dtype))
    return bias[:, None]  # (B|1, 1, t, S)


class Conv1D(nnx.Linear):
    """transformers' Conv1D(nf, nx): x @ W + b with W (in, out) = (nx, nf), an nnx.Linear's kernel
    as it is."""

    def __init__(self, nf, nx, dtype, *, rngs: nnx.Rngs):
        super().__init__(nx, nf, dtype=dtype, param_dtype=dtype, rngs=rngs)


class GPT2Attention(nnx.Module):
    """Causal multi-head self-attention: c_attn packs q, k, v as (C, 3C); scores times the spec's
    scale plus the additive mask, softmax, dropout, weights times v, heads merged, c_proj."""

    def __init__(self, spec, layer_idx, dtype, *, rngs: nnx.Rngs):
        self.num_heads = spec.n_head
        self.head_dim = spec.head_dim
        self.split_size = spec.n_embd
        self.scaling = spec.attention_scale(layer_idx)
        self.c_attn = Conv1D(3 * spec.n_embd, spec.n_embd, dtype, rngs=rngs)
        self.c_proj = Conv1D(spec.n_embd, spec.n_embd, dtype, rngs=rngs)
        self.attn_dropout = nnx.Dropout(spec.attn_pdrop, rngs=rngs)
        self.resid_dropout = nnx.Dropout(spec.resid_pdrop, rngs=rngs)

    def split_heads(self, x):  # (B, t, C)
        x = jnp.reshape(x, (*x.shape[:-1], self.num_heads, self.head_dim))  # (B, t, H, D)
        return jnp.transpose(x, (0, 2, 1, 3))  # (B, H, t, D)

    def __call__(self, hidden_states, bias, layer_cache=None, slots=None):  # (B, t, C), (B|1, 1, t, S)
        """Without a cache the keys are these t positions (S = t); with one, (key, value) buffers
        (B, H, max_len, D) get this call's keys and values at `slots` (t,), consecutive, and all
        max_len are attended (S = max_len). -> (B, t, C), the updated (key, value) or None"""
        query, key, value = jnp.split(self.c_attn(hidden_states), 3, axis=-1)  # 3 x (B, t, C)
        query, key, value = self.split_heads(query), self.split_heads(key), self.split_heads(value)  # (B, H, t, D)
        if layer_cache is not None:
            zero = jnp.zeros_like(slots[0])  # the start indices must share one integer type
            start = (zero, zero, slots[0], zero)
            key = jax.lax.dynamic_update_slice(layer_cache[0], key, start)  # (B, H, S, D)
            value = jax.lax.dynamic_update_slice(layer_cache[1], value, start)
            layer_cache = (key, value)
        scores = jnp.matmul(query, jnp.swapaxes(key, -1, -2)) * self.scaling + bias  # (B, H, t, S)
        weights = self.attn_dropout(jax.nn.softmax(scores, axis=-1))  # (B, H, t, S)
        context = jnp.transpose(jnp.matmul(weights, value), (0, 2, 1, 3))  # (B, t, H, D)
        context = jnp.reshape(context, (*context.shape[:-2], self.num_heads * self.head_dim))  # (B, t, C)
        return self.resid_dropout(self.c_proj(context)), layer_cache


class GPT2MLP(nnx.Module):
    """c_fc (C, I), the spec's activation (GPT-2: GELU's tanh approximation), c_proj (I, C), dropout."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.c_fc = Conv1D(spec.inner_dim, spec.n_embd, dtype, rngs=rngs)
        self.c_proj = Conv1D(spec.n_embd, spec.inner_dim, dtype, rngs=rngs)
        self.act = activation(spec.activation)
        self.dropout = nnx.Dropout(spec.resid_pdrop, rngs=rngs)

    def __call__(self, hidden_states):  # (B, t, C)
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))  # (B, t, C)


def layer_norm(spec, dtype, rngs):
    """torch.nn.LayerNorm(n_embd, eps): the spec's eps, two-pass variance."""
    return nnx.LayerNorm(spec.n_embd, epsilon=spec.layer_norm_epsilon, use_fast_variance=False, dtype=dtype,
                         param_dtype=dtype, rngs=rngs)


class GPT2Block(nnx.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, spec, layer_idx, dtype, *, rngs: nnx.Rngs):
        self.ln_1 = layer_norm(spec, dtype, rngs)
        self.attn = GPT2Attention(spec, layer_idx, dtype, rngs=rngs)
        self.ln_2 = layer_norm(spec, dtype, rngs)
        self.mlp = GPT2MLP(spec, dtype, rngs=rngs)

    def __call__(self, hidden_states, bias, layer_cache=None, slots=None):  # (B, t, C)
        attn_output, layer_cache = self.attn(self.ln_1(hidden_states), bias, layer_cache, slots)
        hidden_states = attn_output + hidden_states
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states))
        return hidden_states, layer_cache  # (B, t, C)


class GPT2Model(nnx.Module):
    """Token plus position embeddings, dropout, the blocks, the final LayerNorm ln_f."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.wte = nnx.Embed(spec.vocab_size, spec.n_embd, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.wpe = nnx.Embed(spec.n_positions, spec.n_embd, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.drop = nnx.Dropout(spec.embd_pdrop, rngs=rngs)
        self.h = nnx.List([GPT2Block(spec, i, dtype, rngs=rngs) for i in range(spec.n_layer)])
        self.ln_f = layer_norm(spec, dtype, rngs)

    def __call__(self, input_ids, attention_mask=None, cache=None, position=0):  # (B, t), (B, t) or None
        """Positions position .. position + t - 1. Without a cache the t positions attend to each
        other; with one (a (key, value) per block) they attend to its max_len slots, the ones at or
        after a query's position masked. -> (B, t, C), the updated cache or None"""
        # an iota over the ids' own length, not jnp.arange: jax2onnx cannot export an arange of a symbolic size
        positions = jax.lax.broadcasted_iota(jnp.int32, input_ids.shape[1:], 0) + position  # (t,)
        hidden_states = self.wte(input_ids) + self.wpe(positions)  # (B, t, C)
        keys = positions if cache is None else jnp.arange(cache[0][0].shape[2])  # (S,)
        bias = attention_bias(positions, keys, attention_mask, hidden_states.dtype)  # (B|1, 1, t, S)
        hidden_states = self.drop(hidden_states)
        new_cache = []
        for i, block in enumerate(self.h):
            hidden_states, layer_cache = block(hidden_states, bias, None if cache is None else cache[i], positions)
            new_cache.append(layer_cache)
        return self.ln_f(hidden_states), None if cache is None else tuple(new_cache)  # (B, t, C)


class GPT2LMHeadModel(nnx.Module):
    """GPT2Model under `transformer`, and the tied head: logits = ln_f(x) wte^T."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.transformer = GPT2Model(spec, dtype, rngs=rngs)

    def __call__(self, input_ids, attention_mask=None):  # (B, T), (B, T) or None
        hidden_states, _ = self.transformer(input_ids, attention_mask)  # (B, T, C)
        return {"logits": self.transformer.wte.attend(hidden_states)}  # (B, T, vocab_size)

    def init_cache(self, batch, max_len):
        """Zeroed key and value buffers (B, H, max_len, D) for every block."""
        dtype = self.transformer.wte.embedding.dtype
        shape = (batch, self.spec.n_head, max_len, self.spec.head_dim)
        return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(self.spec.n_layer))

    def decode(self, input_ids, cache, position):  # (B, t), init_cache's buffers, int or 0-d array
        """The logits of ids at positions position .. position + t - 1, attending to the cache's
        earlier slots: their keys and values are written into new buffers, returned as the cache.
        -> logits (B, t, vocab_size), cache"""
        hidden_states, cache = self.transformer(input_ids, cache=cache, position=position)  # (B, t, C)
        return self.transformer.wte.attend(hidden_states), cache  # (B, t, vocab_size)
