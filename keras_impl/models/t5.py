"""T5 with transformers' T5ForConditionalGeneration names and semantics (eager attention); the
equations, the buckets, the masks and their pitfalls are in parity/specs/t5.py.

Layers are named after transformers' modules (`encoder.block.{i}.layer.0.SelfAttention.q`, ...),
less two things that would hold one tensor under several names:
- the stacks own no `embed_tokens`: transformers' are `shared` itself; here the model looks the ids
  up in `shared` and hands the stacks their embeddings (transformers' `inputs_embeds` path);
- a tied head has no `lm_head` layer: Keras' Embedding has no `attend`, so it is written out,
  logits = y shared^T, on the embedding's own variable.
T5LayerNorm is keras.layers.RMSNormalization, whose x * rsqrt(mean(x^2) + eps) * scale is
transformers' T5LayerNorm (eps inside the root, no mean, no bias; computed in max(dtype, float32):
transformers' function in float32, float64 in float64). The eps is passed explicitly (Keras'
default 1e-6 happens to be T5's). Its variable is `scale` (canonical `weight`). GELU comes from
keras_impl.activations, written from the formula (keras.ops.gelu is float32-accurate only).
The additive mask is passed as `additive_mask` (transformers calls it `mask`): Keras'
Layer.__call__ fills a call argument named `mask` itself when it is None (from the inputs' Keras
masks), and a positional None there fails with "got multiple values for argument 'mask'".
New axes are ops.expand_dims, not x[:, None, None, :]: TFLite has no builtin for a StridedSlice
adding two axes ("tf.StridedSlice op is neither a custom op nor a flex op").

The KV cache (`init_cache`, `decode`) keeps static shapes, as GPT-2's: init_cache runs the encoder
once and holds, per decoder block, zeroed self-attention key and value buffers (B, H, max_len, D),
written at the step's position with ops.slice_update (new tensors: a compiled step takes the
buffers in and hands them out), and the cross-attention keys and values (B, H, S, D) of the encoder
output; plus the encoder's additive padding mask. A step attends to all max_len slots, the ones
after a query's position masked, with the causal position bias of its query positions against
every slot.
"""
import keras
import numpy as np
from keras import ops

from keras_impl.activations import activation


def relative_position_bucket(relative_position, bidirectional, num_buckets, thresholds):  # (t, S) key - query
    """transformers' _relative_position_bucket by integer comparisons: the distance's count of the
    spec's thresholds, plus num_buckets / 2 for a key after the query when bidirectional (the
    decoder's causal buckets count only keys before it). -> (t, S) bucket ids"""
    if bidirectional:
        offset = ops.cast(relative_position > 0, "int32") * (num_buckets // 2)
        distance = ops.abs(relative_position)
    else:
        offset = 0
        distance = -ops.minimum(relative_position, 0)
    steps = ops.convert_to_tensor(thresholds, dtype=distance.dtype)  # (K,)
    return offset + ops.sum(ops.cast(ops.expand_dims(distance, -1) >= steps, "int32"), axis=-1)  # (t, S)


def padding_mask(attention_mask, dtype):  # (B, S) 1 = attend, or None
    """transformers' eager mask of padded keys, ADDED to the scores: 0 where attention_mask is 1,
    finfo(dtype).min where it is 0. -> (B, 1, 1, S) or None"""
    if attention_mask is None:
        return None
    mask = ops.where(ops.not_equal(attention_mask, 0), ops.zeros((), dtype=dtype),
                     ops.full((), np.finfo(dtype).min, dtype=dtype))
    return ops.expand_dims(ops.expand_dims(mask, 1), 1)  # (B, 1, 1, S)


def causal_mask(length, attention_mask, dtype, position=None, key_length=None):  # T, (B, T) or None
    """The decoder's eager mask: 0 where query i may attend to key j (j <= i and not padding),
    finfo(dtype).min elsewhere. A cached step's queries are at position .. position + T - 1 and its
    keys are key_length cache slots. -> (B|1, 1, T, T | key_length)"""
    positions = ops.arange(length, dtype="int32")
    keys = positions if key_length is None else ops.arange(key_length, dtype="int32")  # (S,)
    if position is not None:
        positions = positions + position
    allowed = ops.expand_dims(ops.expand_dims(keys, 0) <= ops.expand_dims(positions, 1), 0)  # (1, T, S)
    if attention_mask is not None:
        allowed = ops.logical_and(allowed, ops.expand_dims(ops.not_equal(attention_mask, 0), 1))  # (B, T, T)
    mask = ops.where(allowed, ops.zeros((), dtype=dtype), ops.full((), np.finfo(dtype).min, dtype=dtype))
    return ops.expand_dims(mask, 1)  # (B|1, 1, T, T)


class T5LayerNorm(keras.layers.RMSNormalization):
    """w * x / sqrt(mean(x^2) + eps): no mean subtracted, no bias (transformers' T5LayerNorm)."""

    def __init__(self, spec, dtype):
        super().__init__(axis=-1, epsilon=spec.layer_norm_epsilon, dtype=dtype)


def linear(in_features, out_features, dtype):
    """keras.layers.Dense without a bias (every T5 Linear); Dense reads in_features from its input."""
    return keras.layers.Dense(out_features, use_bias=False, dtype=dtype)


class T5DenseActDense(keras.layers.Layer):
    """wo(dropout(act(wi x))): t5-small's ReLU feed-forward."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.wi = linear(spec.d_model, spec.d_ff, dtype)
        self.wo = linear(spec.d_ff, spec.d_model, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.act = activation(spec.activation)
        self.built = True  # no variables of its own; the children build on their first call

    def call(self, hidden_states, training=False):  # (B, t, C)
        return self.wo(self.dropout(self.act(self.wi(hidden_states)), training=training))  # (B, t, C)


class T5DenseGatedActDense(keras.layers.Layer):
    """wo(dropout(act(wi_0 x) * wi_1 x)): T5 v1.1's gated feed-forward (GELU's tanh approximation)."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.wi_0 = linear(spec.d_model, spec.d_ff, dtype)
        self.wi_1 = linear(spec.d_model, spec.d_ff, dtype)
        self.wo = linear(spec.d_ff, spec.d_model, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.act = activation(spec.activation)
        self.built = True

    def call(self, hidden_states, training=False):  # (B, t, C)
        hidden_states = self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states)  # (B, t, F)
        return self.wo(self.dropout(hidden_states, training=training))  # (B, t, C)


class T5LayerFF(keras.layers.Layer):
    """x + dropout(DenseReluDense(layer_norm(x)))."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.DenseReluDense = (T5DenseGatedActDense if spec.is_gated_act else T5DenseActDense)(spec, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, hidden_states, training=False):  # (B, t, C)
        forwarded = self.DenseReluDense(self.layer_norm(hidden_states), training=training)
        return hidden_states + self.dropout(forwarded, training=training)


class T5Attention(keras.layers.Layer):
    """Multi-head attention without the D^-0.5 scale: q k^T + position bias + mask, softmax,
    dropout, times v, heads merged, o. Block 0's self-attention owns the relative position bias
    table and computes the bias the other blocks of its stack reuse."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__(dtype=dtype)
        self.num_heads = spec.num_heads
        self.key_value_proj_dim = spec.d_kv
        self.has_relative_attention_bias = has_relative_attention_bias
        self.bidirectional = not is_decoder
        self.num_buckets = spec.relative_attention_num_buckets
        self.thresholds = spec.relative_position_thresholds(self.bidirectional)
        self.q = linear(spec.d_model, spec.inner_dim, dtype)
        self.k = linear(spec.d_model, spec.inner_dim, dtype)
        self.v = linear(spec.d_model, spec.inner_dim, dtype)
        self.o = linear(spec.inner_dim, spec.d_model, dtype)
        if has_relative_attention_bias:
            self.relative_attention_bias = keras.layers.Embedding(spec.relative_attention_num_buckets,
                                                                  spec.num_heads, dtype=dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def compute_bias(self, query_length, key_length, position=None):
        """Row bucket(j - i) of the table for every (query i, key j), the queries at position ..
        position + t - 1 in a cached step. -> (1, H, t, S)"""
        context_position = ops.expand_dims(ops.arange(query_length, dtype="int32"), 1)  # (t, 1)
        if position is not None:
            context_position = context_position + position
        memory_position = ops.expand_dims(ops.arange(key_length, dtype="int32"), 0)  # (1, S)
        buckets = relative_position_bucket(memory_position - context_position, self.bidirectional,
                                           self.num_buckets, self.thresholds)  # (t, S)
        return ops.expand_dims(ops.transpose(self.relative_attention_bias(buckets), (2, 0, 1)), 0)  # (1, H, t, S)

    def split_heads(self, x, length):  # (B, n, H * D), n
        """(B, n, H * D) -> (B, H, n, D). The batch is -1 and n the length of the Dense's INPUT: sizes
        read off x itself become "copy this axis" (0) in tf2onnx's Reshape, and its optimizer then
        merges the Dense's (bias-free) reshape back to 3-D away, so the copied axes were those of
        the 2-D (B * n, H * D) matmul output (ONNX Runtime: "cannot reshape {7,8} to {7,8,2,4}")."""
        x = ops.reshape(x, (-1, length, self.num_heads, self.key_value_proj_dim))  # (B, n, H, D)
        return ops.transpose(x, (0, 2, 1, 3))  # (B, H, n, D)

    def key_value(self, current_states):  # (B, S, C)
        """The keys and values of current_states. -> 2 x (B, H, S, D)"""
        key = self.split_heads(self.k(current_states), ops.shape(current_states)[1])  # (B, H, S, D)
        return key, self.split_heads(self.v(current_states), ops.shape(current_states)[1])

    def call(self, hidden_states, additive_mask=None, key_value_states=None, position_bias=None, layer_cache=None,
             position=None, training=False):
        """Self-attention, or cross-attention over key_value_states (B, S, C). position_bias
        (1, H, t, S) given by an earlier block, or computed here (block 0), or none (cross).
        With a cache, self-attention (`position` given: the queries' first position) writes its keys
        and values into layer_cache's (key, value) buffers (B, H, max_len, D) at position ..
        position + t - 1 (new tensors) and attends to all max_len slots (S = max_len);
        cross-attention (`position` None) attends to layer_cache's keys and values as they are (the
        encoder's). -> (B, t, C), the position bias for the next block, the updated (key, value) or None"""
        query = self.split_heads(self.q(hidden_states), ops.shape(hidden_states)[1])  # (B, H, t, D)
        if layer_cache is not None and position is None:
            key, value = layer_cache  # (B, H, S, D): cross-attention's, computed once by init_cache
        else:
            key, value = self.key_value(hidden_states if key_value_states is None else key_value_states)
            if layer_cache is not None:
                start = (0, 0, position, 0)
                key = ops.slice_update(layer_cache[0], start, key)  # (B, H, max_len, D)
                value = ops.slice_update(layer_cache[1], start, value)
                layer_cache = (key, value)
        scores = ops.matmul(query, ops.swapaxes(key, 2, 3))  # (B, H, t, S), unscaled
        if position_bias is None and self.has_relative_attention_bias:
            position_bias = self.compute_bias(ops.shape(query)[2], ops.shape(key)[2], position)
        if position_bias is not None:
            scores = scores + position_bias
        if additive_mask is not None:
            scores = scores + additive_mask
        weights = self.dropout(ops.softmax(scores, axis=-1), training=training)  # (B, H, t, S)
        context = ops.transpose(ops.matmul(weights, value), (0, 2, 1, 3))  # (B, t, H, D)
        shape = ops.shape(context)
        context = ops.reshape(context, (shape[0], shape[1], self.num_heads * self.key_value_proj_dim))
        return self.o(context), position_bias, layer_cache  # (B, t, C)


class T5LayerSelfAttention(keras.layers.Layer):
    """x + dropout(SelfAttention(layer_norm(x)))."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__(dtype=dtype)
        self.SelfAttention = T5Attention(spec, has_relative_attention_bias, is_decoder, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, hidden_states, additive_mask=None, position_bias=None, layer_cache=None, position=None,
             training=False):
        attention_output, position_bias, layer_cache = self.SelfAttention(
            self.layer_norm(hidden_states), additive_mask, position_bias=position_bias, layer_cache=layer_cache,
            position=position, training=training)  # (B, t, C)
        return hidden_states + self.dropout(attention_output, training=training), position_bias, layer_cache


class T5LayerCrossAttention(keras.layers.Layer):
    """y + dropout(EncDecAttention(layer_norm(y), keys and values from the encoder states))."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.EncDecAttention = T5Attention(spec, False, True, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, hidden_states, key_value_states, additive_mask=None, layer_cache=None, training=False):
        attention_output, _, _ = self.EncDecAttention(self.layer_norm(hidden_states), additive_mask,
                                                      key_value_states=key_value_states, layer_cache=layer_cache,
                                                      training=training)  # (B, t, C), (B, S, C)
        return hidden_states + self.dropout(attention_output, training=training)  # (B, t, C)


class T5Block(keras.layers.Layer):
    """layer.0 self-attention, (decoder) layer.1 cross-attention, then the feed-forward."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__(dtype=dtype)
        self.is_decoder = is_decoder
        layers = [T5LayerSelfAttention(spec, has_relative_attention_bias, is_decoder, dtype)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(spec, dtype))
        layers.append(T5LayerFF(spec, dtype))
        self.layer = layers
        self.built = True

    def call(self, hidden_states, additive_mask, position_bias, encoder_hidden_states=None, encoder_mask=None,
             layer_cache=None, position=None, training=False):
        """layer_cache: a decoder block's ((key, value) buffers of its self-attention, the encoder's
        (key, value) of its cross-attention), or None. -> (B, t, C), the position bias, the updated
        layer_cache or None"""
        self_cache, cross_cache = (None, None) if layer_cache is None else layer_cache
        hidden_states, position_bias, self_cache = self.layer[0](hidden_states, additive_mask, position_bias,
                                                                 self_cache, position, training=training)  # (B, t, C)
        if self.is_decoder:
            hidden_states = self.layer[1](hidden_states, encoder_hidden_states, encoder_mask, cross_cache,
                                          training=training)
        new_cache = None if layer_cache is None else (self_cache, cross_cache)
        return self.layer[-1](hidden_states, training=training), position_bias, new_cache  # (B, t, C)


class T5Stack(keras.layers.Layer):
    """The encoder (bidirectional) or the decoder (causal, with cross-attention): dropout on the
    embeddings, the blocks sharing block 0's position bias, final_layer_norm, dropout."""

    def __init__(self, spec, is_decoder, dtype):
        super().__init__(dtype=dtype)
        self.is_decoder = is_decoder
        layers = spec.decoder_layers if is_decoder else spec.num_layers
        self.block = [T5Block(spec, i == 0, is_decoder, dtype) for i in range(layers)]
        self.final_layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, inputs_embeds, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
             cache=None, position=None, training=False):
        """inputs_embeds (B, t, C); attention_mask (B, t) of these positions; the decoder's
        encoder_hidden_states (B, S, C) and their encoder_attention_mask (B, S). A cached decoder
        step instead: `cache` (init_cache's (blocks, encoder mask)), the ids at position ..
        position + t - 1, attending to the cache's max_len slots. -> (B, t, C), the updated cache or None"""
        dtype = self.compute_dtype
        if position is not None:
            position = ops.cast(position, "int32")
        if self.is_decoder:
            key_length = None if cache is None else ops.shape(cache[0][0][0][0])[2]  # the cache's max_len
            mask = causal_mask(ops.shape(inputs_embeds)[1], attention_mask, dtype, position,
                               key_length)  # (B|1, 1, t, t | max_len)
        else:
            mask = padding_mask(attention_mask, dtype)  # (B, 1, 1, t) or None
        encoder_mask = padding_mask(encoder_attention_mask, dtype) if cache is None else cache[1]  # (B, 1, 1, S)
        hidden_states = self.dropout(inputs_embeds, training=training)
        position_bias = None
        new_blocks = []
        for i, block in enumerate(self.block):
            hidden_states, position_bias, layer_cache = block(hidden_states, mask, position_bias, encoder_hidden_states,
                                                              encoder_mask, None if cache is None else cache[0][i],
                                                              position, training=training)
            new_blocks.append(layer_cache)
        new_cache = None if cache is None else (tuple(new_blocks), encoder_mask)
        return self.dropout(self.final_layer_norm(hidden_states), training=training), new_cache  # (B, t, C)


class T5ForConditionalGeneration(keras.Model):
    """shared embedding, encoder, decoder, and the head: tied (y * d_model^-0.5) shared^T, or lm_head."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.shared = keras.layers.Embedding(spec.vocab_size, spec.d_model, dtype=dtype)
        self.encoder = T5Stack(spec, False, dtype)
        self.decoder = T5Stack(spec, True, dtype)
        if not spec.tie_word_embeddings:
            self.lm_head = linear(spec.d_model, spec.vocab_size, dtype)
        self.output_scale = spec.d_model ** -0.5 if spec.scales_decoder_outputs else None

    def call(self, input_ids, attention_mask=None, *, decoder_input_ids, decoder_attention_mask=None,
             training=False):
        """input_ids (B, S), decoder_input_ids (B, T), masks 1 = attend. -> {"logits": (B, T, V)}"""
        encoder_hidden_states, _ = self.encoder(self.shared(input_ids), attention_mask, training=training)  # (B, S, C)
        sequence_output, _ = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask,
                                          encoder_hidden_states, attention_mask, training=training)  # (B, T, C)
        return {"logits": self.lm_logits(sequence_output)}  # (B, T, V)

    def lm_logits(self, sequence_output):  # (B, T, C)
        """The head: tied, (y * d_model^-0.5 if scale_decoder_outputs) shared^T, or lm_head. -> (B, T, V)"""
        if self.output_scale is not None:
            sequence_output = sequence_output * self.output_scale
        if self.spec.tie_word_embeddings:
            return ops.matmul(sequence_output, ops.transpose(self.shared.embeddings))  # (B, T, V)
        return self.lm_head(sequence_output)  # (B, T, V)

    def init_cache(self, batch, max_len, input_ids, attention_mask=None):  # B, max_len, (B, S), (B, S) or None
        """The encoder run once on the source, and per decoder block: zeroed self-attention key and
        value buffers (B, H, max_len, D) and the cross-attention's keys and values (B, H, S, D) of the
        encoder output; plus the encoder's additive padding mask (B, 1, 1, S) (zeros when no
        attention_mask). -> (blocks, encoder mask)"""
        if attention_mask is None:
            attention_mask = ops.ones_like(input_ids)
        encoder_hidden_states, _ = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, C)
        shape = (batch, self.spec.num_heads, max_len, self.spec.d_kv)
        blocks = tuple(((ops.zeros(shape, dtype=self.compute_dtype), ops.zeros(shape, dtype=self.compute_dtype)),
                        block.layer[1].EncDecAttention.key_value(encoder_hidden_states))
                       for block in self.decoder.block)
        return blocks, padding_mask(attention_mask, self.compute_dtype)

    def decode(self, decoder_input_ids, cache, position):  # (B, t), init_cache's cache, int or 0-d tensor
        """The logits of decoder ids at positions position .. position + t - 1, attending to the
        cache's earlier slots and to the encoder output: their keys and values are written into new
        buffers, returned as the cache. -> logits (B, t, V), cache"""
        sequence_output, cache = self.decoder(self.shared(decoder_input_ids), cache=cache, position=position)
        return self.lm_logits(sequence_output), cache  # (B, t, V)
