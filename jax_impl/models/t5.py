"""T5 with transformers' T5ForConditionalGeneration names and semantics (eager attention); the
equations, the buckets, the masks and their pitfalls are in parity/specs/t5.py.

Modules are named after transformers' (`encoder.block.{i}.layer.0.SelfAttention.q`, ...), less two
things that would hold one tensor under several names:
- the stacks own no `embed_tokens`: transformers' are `shared` itself; here the model looks the ids
  up in `shared` and hands the stacks their embeddings (transformers' `inputs_embeds` path);
- a tied head has no `lm_head` module: it is nnx.Embed's own `attend` (y shared^T).
T5LayerNorm is nnx.RMSNorm: x * (rsqrt(mean(x^2) + eps) * scale), transformers' T5LayerNorm with
the two products associated the other way (one rounding apart in float32; the statistic in
max(dtype, float32), float64 in float64). Its eps is passed explicitly (Flax's default 1e-6
happens to be T5's); its parameter is `scale` (canonical `weight`). GELU's approximation is passed
explicitly by jax_impl.activations (jax.nn.gelu's default is tanh).

The relative position buckets are integer comparisons against thresholds the spec computed once:
transformers' float32 formula under jax.jit rounds differently at a boundary (XLA turns the
division by a constant into a multiplication by its reciprocal), see parity/specs/t5.py.
The additive mask argument is `additive_mask` (transformers' `mask`; Keras reserves that name).

For jax2onnx's symbolic shapes (parity's ONNX export): positions are lax.broadcasted_iota over the
(t, S) grid, not jnp.arange(t)[:, None] (jax2onnx gives jnp.arange of a symbolic length a
data-dependent length of its own, which no longer broadcasts against the scores' S); new axes are
jnp.expand_dims, not x[:, None] (indexing fails on those lengths); the iota's integers are
jnp.int_ (int64 under the x64 an int64-input export traces with: int32 positions beside int64
constants fail ONNX's type check).

The KV cache (`init_cache`, `decode`) keeps static shapes, as GPT-2's: init_cache runs the encoder
once and holds, per decoder block, zeroed self-attention key and value buffers (B, H, max_len, D),
written at the step's position with lax.dynamic_update_slice (a traced position: one compiled step
serves every position), and the cross-attention keys and values (B, H, S, D) of the encoder
output; plus the encoder's additive padding mask. A step attends to all max_len slots, the ones
after a query's position masked, with the causal position bias of its query positions against
every slot.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.activations import activation


def relative_position_bucket(relative_position, bidirectional, num_buckets, thresholds):  # (t, S) key - query
    """transformers' _relative_position_bucket by integer comparisons: the distance's count of the
    spec's thresholds, plus num_buckets / 2 for a key after the query when bidirectional (the
    decoder's causal buckets count only keys before it). -> (t, S) bucket ids"""
    if bidirectional:
        offset = (relative_position > 0).astype(relative_position.dtype) * (num_buckets // 2)
        distance = jnp.abs(relative_position)
    else:
        offset = 0
        distance = -jnp.minimum(relative_position, 0)
    steps = jnp.asarray(thresholds, distance.dtype)  # (K,)
    return offset + jnp.sum((jnp.expand_dims(distance, -1) >= steps).astype(distance.dtype), axis=-1)  # (t, S)


def _index_dtype():
    """jnp.int_ as the current x64 setting makes it (int64 inside jax.enable_x64, else int32),
    without jnp's warning about a truncated int64."""
    return jax.dtypes.canonicalize_dtype(jnp.int_)


def padding_mask(attention_mask, dtype):  # (B, S) 1 = attend, or None
    """transformers' eager mask of padded keys, ADDED to the scores: 0 where attention_mask is 1,
    finfo(dtype).min where it is 0. -> (B, 1, 1, S) or None"""
    if attention_mask is None:
        return None
    mask = jnp.where(attention_mask != 0, jnp.zeros((), dtype), jnp.asarray(jnp.finfo(dtype).min, dtype))
    return jnp.expand_dims(mask, (1, 2))  # (B, 1, 1, S)


def causal_mask(length, attention_mask, dtype, position=None, key_length=None):  # T, (B, T) or None
    """The decoder's eager mask: 0 where query i may attend to key j (j <= i and not padding),
    finfo(dtype).min elsewhere. A cached step's queries are at position .. position + T - 1 and its
    keys are key_length cache slots. -> (B|1, 1, T, T | key_length)"""
    grid = (length, length if key_length is None else key_length)
    query_position = jax.lax.broadcasted_iota(_index_dtype(), grid, 0)  # (T, S): i
    if position is not None:
        query_position = query_position + position
    key_position = jax.lax.broadcasted_iota(_index_dtype(), grid, 1)  # (T, S): j
    allowed = jnp.expand_dims(key_position <= query_position, 0)  # (1, T, S)
    if attention_mask is not None:
        allowed = allowed & jnp.expand_dims(attention_mask != 0, 1)  # (B, T, T)
    mask = jnp.where(allowed, jnp.zeros((), dtype), jnp.asarray(jnp.finfo(dtype).min, dtype))
    return jnp.expand_dims(mask, 1)  # (B|1, 1, T, T)


class T5LayerNorm(nnx.RMSNorm):
    """w * x / sqrt(mean(x^2) + eps): no mean subtracted, no bias (transformers' T5LayerNorm)."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        super().__init__(spec.d_model, epsilon=spec.layer_norm_epsilon, dtype=dtype, param_dtype=dtype, rngs=rngs)


def linear(in_features, out_features, dtype, rngs):
    """nnx.Linear without a bias (every T5 Linear)."""
    return nnx.Linear(in_features, out_features, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)


class T5DenseActDense(nnx.Module):
    """wo(dropout(act(wi x))): t5-small's ReLU feed-forward."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.wi = linear(spec.d_model, spec.d_ff, dtype, rngs)
        self.wo = linear(spec.d_ff, spec.d_model, dtype, rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)
        self.act = activation(spec.activation)

    def __call__(self, hidden_states):  # (B, t, C)
        return self.wo(self.dropout(self.act(self.wi(hidden_states))))  # (B, t, C)


class T5DenseGatedActDense(nnx.Module):
    """wo(dropout(act(wi_0 x) * wi_1 x)): T5 v1.1's gated feed-forward (GELU's tanh approximation)."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.wi_0 = linear(spec.d_model, spec.d_ff, dtype, rngs)
        self.wi_1 = linear(spec.d_model, spec.d_ff, dtype, rngs)
        self.wo = linear(spec.d_ff, spec.d_model, dtype, rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)
        self.act = activation(spec.activation)

    def __call__(self, hidden_states):  # (B, t, C)
        hidden_states = self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states)  # (B, t, F)
        return self.wo(self.dropout(hidden_states))  # (B, t, C)


class T5LayerFF(nnx.Module):
    """x + dropout(DenseReluDense(layer_norm(x)))."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.DenseReluDense = (T5DenseGatedActDense if spec.is_gated_act else T5DenseActDense)(spec, dtype, rngs=rngs)
        self.layer_norm = T5LayerNorm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)

    def __call__(self, hidden_states):  # (B, t, C)
        return hidden_states + self.dropout(self.DenseReluDense(self.layer_norm(hidden_states)))


class T5Attention(nnx.Module):
    """Multi-head attention without the D^-0.5 scale: q k^T + position bias + mask, softmax,
    dropout, times v, heads merged, o. Block 0's self-attention owns the relative position bias
    table and computes the bias the other blocks of its stack reuse."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype, *, rngs: nnx.Rngs):
        self.num_heads = spec.num_heads
        self.key_value_proj_dim = spec.d_kv
        self.has_relative_attention_bias = has_relative_attention_bias
        self.bidirectional = not is_decoder
        self.num_buckets = spec.relative_attention_num_buckets
        self.thresholds = spec.relative_position_thresholds(self.bidirectional)
        self.q = linear(spec.d_model, spec.inner_dim, dtype, rngs)
        self.k = linear(spec.d_model, spec.inner_dim, dtype, rngs)
        self.v = linear(spec.d_model, spec.inner_dim, dtype, rngs)
        self.o = linear(spec.inner_dim, spec.d_model, dtype, rngs)
        if has_relative_attention_bias:
            self.relative_attention_bias = nnx.Embed(spec.relative_attention_num_buckets, spec.num_heads,
                                                     dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)

    def compute_bias(self, query_length, key_length, position=None):
        """Row bucket(j - i) of the table for every (query i, key j), the queries at position ..
        position + t - 1 in a cached step. -> (1, H, t, S)"""
        context_position = jax.lax.broadcasted_iota(_index_dtype(), (query_length, key_length), 0)  # (t, S): i
        if position is not None:
            context_position = context_position + position
        memory_position = jax.lax.broadcasted_iota(_index_dtype(), (query_length, key_length), 1)  # (t, S): j
        buckets = relative_position_bucket(memory_position - context_position, self.bidirectional,
                                           self.num_buckets, self.thresholds)  # (t, S)
        return jnp.expand_dims(jnp.transpose(self.relative_attention_bias(buckets), (2, 0, 1)), 0)  # (1, H, t, S)

    def split_heads(self, x, length):  # (B, n, H * D), n
        x = jnp.reshape(x, (-1, length, self.num_heads, self.key_value_proj_dim))  # (B, n, H, D)
        return jnp.transpose(x, (0, 2, 1, 3))  # (B, H, n, D)

    def key_value(self, current_states):  # (B, S, C)
        """The keys and values of current_states. -> 2 x (B, H, S, D)"""
        key = self.split_heads(self.k(current_states), current_states.shape[1])  # (B, H, S, D)
        return key, self.split_heads(self.v(current_states), current_states.shape[1])

    def __call__(self, hidden_states, additive_mask=None, key_value_states=None, position_bias=None, layer_cache=None,
                 position=None):  # (B, t, C)
        """Self-attention, or cross-attention over key_value_states (B, S, C). position_bias
        (1, H, t, S) given by an earlier block, or computed here (block 0), or none (cross).
        With a cache, self-attention (`position` given: the queries' first position) writes its keys
        and values into layer_cache's (key, value) buffers (B, H, max_len, D) at position ..
        position + t - 1 (new arrays) and attends to all max_len slots (S = max_len); cross-attention
        (`position` None) attends to layer_cache's keys and values as they are (the encoder's).
        -> (B, t, C), the position bias for the next block, the updated (key, value) or None"""
        query = self.split_heads(self.q(hidden_states), hidden_states.shape[1])  # (B, H, t, D)
        if layer_cache is not None and position is None:
            key, value = layer_cache  # (B, H, S, D): cross-attention's, computed once by init_cache
        else:
            key, value = self.key_value(hidden_states if key_value_states is None else key_value_states)
            if layer_cache is not None:
                zero = jnp.zeros_like(position)  # the start indices must share one integer type
                start = (zero, zero, position, zero)
                key = jax.lax.dynamic_update_slice(layer_cache[0], key, start)  # (B, H, max_len, D)
                value = jax.lax.dynamic_update_slice(layer_cache[1], value, start)
                layer_cache = (key, value)
        scores = jnp.matmul(query, jnp.swapaxes(key, 2, 3))  # (B, H, t, S), unscaled
        if position_bias is None and self.has_relative_attention_bias:
            position_bias = self.compute_bias(query.shape[2], key.shape[2], position)
        if position_bias is not None:
            scores = scores + position_bias
        if additive_mask is not None:
            scores = scores + additive_mask
        weights = self.dropout(jax.nn.softmax(scores, axis=-1))  # (B, H, t, S)
        context = jnp.transpose(jnp.matmul(weights, value), (0, 2, 1, 3))  # (B, t, H, D)
        context = jnp.reshape(context, (*context.shape[:2], self.num_heads * self.key_value_proj_dim))
        return self.o(context), position_bias, layer_cache  # (B, t, C)


class T5LayerSelfAttention(nnx.Module):
    """x + dropout(SelfAttention(layer_norm(x)))."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype, *, rngs: nnx.Rngs):
        self.SelfAttention = T5Attention(spec, has_relative_attention_bias, is_decoder, dtype, rngs=rngs)
        self.layer_norm = T5LayerNorm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)

    def __call__(self, hidden_states, additive_mask=None, position_bias=None, layer_cache=None, position=None):
        attention_output, position_bias, layer_cache = self.SelfAttention(
            self.layer_norm(hidden_states), additive_mask, position_bias=position_bias, layer_cache=layer_cache,
            position=position)  # (B, t, C)
        return hidden_states + self.dropout(attention_output), position_bias, layer_cache


class T5LayerCrossAttention(nnx.Module):
    """y + dropout(EncDecAttention(layer_norm(y), keys and values from the encoder states))."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.EncDecAttention = T5Attention(spec, False, True, dtype, rngs=rngs)
        self.layer_norm = T5LayerNorm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)

    def __call__(self, hidden_states, key_value_states, additive_mask=None, layer_cache=None):  # (B, t, C), (B, S, C)
        attention_output, _, _ = self.EncDecAttention(self.layer_norm(hidden_states), additive_mask,
                                                      key_value_states=key_value_states, layer_cache=layer_cache)
        return hidden_states + self.dropout(attention_output)  # (B, t, C)


class T5Block(nnx.Module):
    """layer.0 self-attention, (decoder) layer.1 cross-attention, then the feed-forward."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype, *, rngs: nnx.Rngs):
        self.is_decoder = is_decoder
        layers = [T5LayerSelfAttention(spec, has_relative_attention_bias, is_decoder, dtype, rngs=rngs)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(spec, dtype, rngs=rngs))
        layers.append(T5LayerFF(spec, dtype, rngs=rngs))
        self.layer = nnx.List(layers)

    def __call__(self, hidden_states, additive_mask, position_bias, encoder_hidden_states=None, encoder_mask=None,
                 layer_cache=None, position=None):
        """layer_cache: a decoder block's ((key, value) buffers of its self-attention, the encoder's
        (key, value) of its cross-attention), or None. -> (B, t, C), the position bias, the updated
        layer_cache or None"""
        self_cache, cross_cache = (None, None) if layer_cache is None else layer_cache
        hidden_states, position_bias, self_cache = self.layer[0](hidden_states, additive_mask, position_bias,
                                                                 self_cache, position)  # (B, t, C)
        if self.is_decoder:
            hidden_states = self.layer[1](hidden_states, encoder_hidden_states, encoder_mask, cross_cache)
        new_cache = None if layer_cache is None else (self_cache, cross_cache)
        return self.layer[-1](hidden_states), position_bias, new_cache  # (B, t, C)


class T5Stack(nnx.Module):
    """The encoder (bidirectional) or the decoder (causal, with cross-attention): dropout on the
    embeddings, the blocks sharing block 0's position bias, final_layer_norm, dropout."""

    def __init__(self, spec, is_decoder, dtype, *, rngs: nnx.Rngs):
        self.is_decoder = is_decoder
        layers = spec.decoder_layers if is_decoder else spec.num_layers
        self.block = nnx.List([T5Block(spec, i == 0, is_decoder, dtype, rngs=rngs) for i in range(layers)])
        self.final_layer_norm = T5LayerNorm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout_rate, rngs=rngs)

    def __call__(self, inputs_embeds, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                 cache=None, position=None):
        """inputs_embeds (B, t, C); attention_mask (B, t) of these positions; the decoder's
        encoder_hidden_states (B, S, C) and their encoder_attention_mask (B, S). A cached decoder
        step instead: `cache` (init_cache's (blocks, encoder mask)), the ids at position ..
        position + t - 1, attending to the cache's max_len slots. -> (B, t, C), the updated cache or None"""
        dtype = inputs_embeds.dtype
        if position is not None:
            position = jnp.asarray(position)
        if self.is_decoder:
            key_length = None if cache is None else cache[0][0][0][0].shape[2]  # the cache's max_len
            mask = causal_mask(inputs_embeds.shape[1], attention_mask, dtype, position,
                               key_length)  # (B|1, 1, t, t | max_len)
        else:
            mask = padding_mask(attention_mask, dtype)  # (B, 1, 1, t) or None
        encoder_mask = padding_mask(encoder_attention_mask, dtype) if cache is None else cache[1]  # (B, 1, 1, S)
        hidden_states = self.dropout(inputs_embeds)
        position_bias = None
        new_blocks = []
        for i, block in enumerate(self.block):
            hidden_states, position_bias, layer_cache = block(hidden_states, mask, position_bias, encoder_hidden_states,
                                                              encoder_mask, None if cache is None else cache[0][i],
                                                              position)
            new_blocks.append(layer_cache)
        new_cache = None if cache is None else (tuple(new_blocks), encoder_mask)
        return self.dropout(self.final_layer_norm(hidden_states)), new_cache  # (B, t, C)


class T5ForConditionalGeneration(nnx.Module):
    """shared embedding, encoder, decoder, and the head: tied (y * d_model^-0.5) shared^T, or lm_head."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.shared = nnx.Embed(spec.vocab_size, spec.d_model, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.encoder = T5Stack(spec, False, dtype, rngs=rngs)
        self.decoder = T5Stack(spec, True, dtype, rngs=rngs)
        if not spec.tie_word_embeddings:
            self.lm_head = linear(spec.d_model, spec.vocab_size, dtype, rngs)
        self.output_scale = spec.d_model ** -0.5 if spec.scales_decoder_outputs else None

    def __call__(self, input_ids, attention_mask=None, *, decoder_input_ids, decoder_attention_mask=None):
        """input_ids (B, S), decoder_input_ids (B, T), masks 1 = attend. -> {"logits": (B, T, V)}"""
        encoder_hidden_states, _ = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, C)
        sequence_output, _ = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask,
                                          encoder_hidden_states, attention_mask)  # (B, T, C)
        return {"logits": self.lm_logits(sequence_output)}  # (B, T, V)

    def lm_logits(self, sequence_output):  # (B, T, C)
        """The head: tied, (y * d_model^-0.5 if scale_decoder_outputs) shared^T, or lm_head. -> (B, T, V)"""
        if self.output_scale is not None:
            sequence_output = sequence_output * self.output_scale
        if self.spec.tie_word_embeddings:
            return self.shared.attend(sequence_output)  # (B, T, V)
        return self.lm_head(sequence_output)  # (B, T, V)

    def init_cache(self, batch, max_len, input_ids, attention_mask=None):  # B, max_len, (B, S), (B, S) or None
        """The encoder run once on the source, and per decoder block: zeroed self-attention key and
        value buffers (B, H, max_len, D) and the cross-attention's keys and values (B, H, S, D) of the
        encoder output; plus the encoder's additive padding mask (B, 1, 1, S) (zeros when no
        attention_mask). -> (blocks, encoder mask)"""
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        encoder_hidden_states, _ = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, C)
        dtype = self.shared.embedding.dtype
        shape = (batch, self.spec.num_heads, max_len, self.spec.d_kv)
        blocks = tuple(((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)),
                        block.layer[1].EncDecAttention.key_value(encoder_hidden_states))
                       for block in self.decoder.block)
        return blocks, padding_mask(attention_mask, dtype)

    def decode(self, decoder_input_ids, cache, position):  # (B, t), init_cache's cache, int or 0-d array
        """The logits of decoder ids at positions position .. position + t - 1, attending to the
        cache's earlier slots and to the encoder output: their keys and values are written into new
        buffers, returned as the cache. -> logits (B, t, V), cache"""
        sequence_output, cache = self.decoder(self.shared(decoder_input_ids), cache=cache, position=position)
        return self.lm_logits(sequence_output), cache  # (B, t, V)
