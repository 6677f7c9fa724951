"""GPT-2 with transformers' GPT2LMHeadModel names and semantics (eager attention); the equations,
the mask and its pitfalls are in parity/specs/gpt2.py.

Layers are named after transformers' modules (`transformer.h.{i}.attn.c_attn`, ...). Its Conv1D
weight is (in, out), which is already a Dense kernel: Conv1D here IS a Dense, and the weights
load without a transpose (layout kind `conv1d`). Keras has no GPT-2 blocks (keras_hub's
GPT2Backbone names its weights otherwise and is another package) and its Embedding has no
`attend`: the tied head is written out, logits = x wte^T, on the embedding's own variable.
LayerNormalization gets the spec's eps explicitly (Keras' default is 1e-3); GELU is built by
keras_impl.activations from the formula (keras.ops.gelu runs tf.nn.gelu, float32-accurate only).

The KV cache (`init_cache`, `decode`) keeps static shapes: preallocated (B, H, max_len, D)
buffers per layer, written at `position` with ops.slice_update (new tensors: a compiled step
takes the buffers in and hands them out), attention over all max_len slots with the unwritten
ones masked.
"""
import keras
import numpy as np
from keras import ops

from keras_impl.activations import activation


def attention_bias(query_positions, key_positions, attention_mask, dtype):  # (t,), (S,), (B, S) or None
    """transformers' eager mask, to be ADDED to the scores: 0 where query i may attend to key j (j at
    or before i's position and not padding), finfo(dtype).min elsewhere (finite: a fully masked row
    gets a uniform softmax, not NaN). -> (B|1, 1, t, S)"""
    # expand_dims, not x[:, None]: TFLite cannot convert a StridedSlice that adds an axis to this mask.
    allowed = ops.expand_dims(ops.expand_dims(key_positions, 0) <= ops.expand_dims(query_positions, 1), 0)  # (1, t, S)
    if attention_mask is not None:
        allowed = ops.logical_and(allowed, ops.expand_dims(ops.not_equal(attention_mask, 0), 1))  # (B, t, S)
    bias = ops.where(allowed, ops.zeros((), dtype=dtype), ops.full((), np.finfo(dtype).min, dtype=dtype))
    return ops.expand_dims(bias, 1)  # (B|1, 1, t, S)


class Conv1D(keras.layers.Dense):
    """transformers' Conv1D(nf, nx): x @ W + b with W (in, out) = (nx, nf), a Dense's kernel as it
    is (nx is the input width, which Dense reads from its first input)."""

    def __init__(self, nf, nx, dtype):
        super().__init__(nf, dtype=dtype)
        self.nx = nx


class GPT2Attention(keras.layers.Layer):
    """Causal multi-head self-attention: c_attn packs q, k, v as (C, 3C); scores times the spec's
    scale plus the additive mask, softmax, dropout, weights times v, heads merged, c_proj."""

    def __init__(self, spec, layer_idx, dtype):
        super().__init__(dtype=dtype)
        self.num_heads = spec.n_head
        self.head_dim = spec.head_dim
        self.split_size = spec.n_embd
        self.scaling = spec.attention_scale(layer_idx)
        self.c_attn = Conv1D(3 * spec.n_embd, spec.n_embd, dtype)
        self.c_proj = Conv1D(spec.n_embd, spec.n_embd, dtype)
        self.attn_dropout = keras.layers.Dropout(spec.attn_pdrop, dtype=dtype)
        self.resid_dropout = keras.layers.Dropout(spec.resid_pdrop, dtype=dtype)
        self.built = True  # no variables of its own; the children build on their first call

    def split_heads(self, x):  # (B, t, C)
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.num_heads, self.head_dim))  # (B, t, H, D)
        return ops.transpose(x, (0, 2, 1, 3))  # (B, H, t, D)

    def call(self, hidden_states, bias, layer_cache=None, slots=None, training=False):  # (B, t, C), (B|1, 1, t, S)
        """Without a cache the keys are these t positions (S = t); with one, (key, value) buffers
        (B, H, max_len, D) get this call's keys and values at `slots` (t,), consecutive, and all
        max_len are attended (S = max_len). -> (B, t, C), the updated (key, value) or None"""
        query, key, value = ops.split(self.c_attn(hidden_states), 3, axis=-1)  # 3 x (B, t, C)
        query, key, value = self.split_heads(query), self.split_heads(key), self.split_heads(value)  # (B, H, t, D)
        if layer_cache is not None:
            start = (0, 0, slots[0], 0)
            key = ops.slice_update(layer_cache[0], start, key)  # (B, H, S, D)
            value = ops.slice_update(layer_cache[1], start, value)
            layer_cache = (key, value)
        scores = ops.matmul(query, ops.swapaxes(key, -1, -2)) * self.scaling + bias  # (B, H, t, S)
        weights = self.attn_dropout(ops.softmax(scores, axis=-1), training=training)  # (B, H, t, S)
        context = ops.transpose(ops.matmul(weights, value), (0, 2, 1, 3))  # (B, t, H, D)
        shape = ops.shape(context)
        context = ops.reshape(context, (shape[0], shape[1], self.num_heads * self.head_dim))  # (B, t, C)
        return self.resid_dropout(self.c_proj(context), training=training), layer_cache


class GPT2MLP(keras.layers.Layer):
    """c_fc (C, I), the spec's activation (GPT-2: GELU's tanh approximation), c_proj (I, C), dropout."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.c_fc = Conv1D(spec.inner_dim, spec.n_embd, dtype)
        self.c_proj = Conv1D(spec.n_embd, spec.inner_dim, dtype)
        self.act = activation(spec.activation)
        self.dropout = keras.layers.Dropout(spec.resid_pdrop, dtype=dtype)
        self.built = True

    def call(self, hidden_states, training=False):  # (B, t, C)
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))), training=training)  # (B, t, C)


def layer_norm(spec, dtype):
    """torch.nn.LayerNorm(n_embd, eps): the spec's eps (Keras' default is 1e-3)."""
    return keras.layers.LayerNormalization(epsilon=spec.layer_norm_epsilon, dtype=dtype)


class GPT2Block(keras.layers.Layer):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, spec, layer_idx, dtype):
        super().__init__(dtype=dtype)
        self.ln_1 = layer_norm(spec, dtype)
        self.attn = GPT2Attention(spec, layer_idx, dtype)
        self.ln_2 = layer_norm(spec, dtype)
        self.mlp = GPT2MLP(spec, dtype)
        self.built = True

    def call(self, hidden_states, bias, layer_cache=None, slots=None, training=False):  # (B, t, C)
        attn_output, layer_cache = self.attn(self.ln_1(hidden_states), bias, layer_cache, slots, training=training)
        hidden_states = attn_output + hidden_states
        hidden_states = hidden_states + self.mlp(self.ln_2(hidden_states), training=training)
        return hidden_states, layer_cache  # (B, t, C)


class GPT2Model(keras.layers.Layer):
    """Token plus position embeddings, dropout, the blocks, the final LayerNorm ln_f."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.wte = keras.layers.Embedding(spec.vocab_size, spec.n_embd, dtype=dtype)
        self.wpe = keras.layers.Embedding(spec.n_positions, spec.n_embd, dtype=dtype)
        self.drop = keras.layers.Dropout(spec.embd_pdrop, dtype=dtype)
        self.h = [GPT2Block(spec, i, dtype) for i in range(spec.n_layer)]
        self.ln_f = layer_norm(spec, dtype)
        self.built = True

    def call(self, input_ids, attention_mask=None, cache=None, position=0, training=False):  # (B, t), (B, t) or None
        """Positions position .. position + t - 1. Without a cache the t positions attend to each
        other; with one (a (key, value) per block) they attend to its max_len slots, the ones at or
        after a query's position masked. -> (B, t, C), the updated cache or None"""
        position = ops.cast(position, "int32")
        positions = ops.arange(ops.shape(input_ids)[1], dtype="int32") + position  # (t,)
        hidden_states = self.wte(input_ids) + self.wpe(positions)  # (B, t, C)
        keys = positions if cache is None else ops.arange(ops.shape(cache[0][0])[2], dtype="int32")  # (S,)
        bias = attention_bias(positions, keys, attention_mask, self.compute_dtype)  # (B|1, 1, t, S)
        hidden_states = self.drop(hidden_states, training=training)
        new_cache = []
        for i, block in enumerate(self.h):
            hidden_states, layer_cache = block(hidden_states, bias, None if cache is None else cache[i], positions,
                                               training=training)
            new_cache.append(layer_cache)
        return self.ln_f(hidden_states), None if cache is None else tuple(new_cache)  # (B, t, C)


class GPT2LMHeadModel(keras.Model):
    """GPT2Model under `transformer`, and the tied head: logits = ln_f(x) wte^T."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.transformer = GPT2Model(spec, dtype)

    def call(self, input_ids, attention_mask=None, training=False):  # (B, T), (B, T) or None
        hidden_states, _ = self.transformer(input_ids, attention_mask, training=training)  # (B, T, C)
        return {"logits": ops.matmul(hidden_states, ops.transpose(self.transformer.wte.embeddings))}  # (B, T, V)

    def init_cache(self, batch, max_len):
        """Zeroed key and value buffers (B, H, max_len, D) for every block."""
        shape = (batch, self.spec.n_head, max_len, self.spec.head_dim)
        return tuple((ops.zeros(shape, dtype=self.compute_dtype), ops.zeros(shape, dtype=self.compute_dtype))
                     for _ in range(self.spec.n_layer))

    def decode(self, input_ids, cache, position):  # (B, t), init_cache's buffers, int or 0-d tensor
        """The logits of ids at positions position .. position + t - 1, attending to the cache's
        earlier slots: their keys and values are written into new buffers, returned as the cache.
        -> logits (B, t, vocab_size), cache"""
        hidden_states, cache = self.transformer(input_ids, cache=cache, position=position)  # (B, t, C)
        return ops.matmul(hidden_states, ops.transpose(self.transformer.wte.embeddings)), cache  # (B, t, V)
