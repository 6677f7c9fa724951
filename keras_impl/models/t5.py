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


def causal_mask(length, attention_mask, dtype):  # T, (B, T) or None
    """The decoder's eager mask: 0 where query i may attend to key j (j <= i and not padding),
    finfo(dtype).min elsewhere. -> (B|1, 1, T, T)"""
    positions = ops.arange(length, dtype="int32")
    allowed = ops.expand_dims(ops.expand_dims(positions, 0) <= ops.expand_dims(positions, 1), 0)  # (1, T, T)
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

    def compute_bias(self, query_length, key_length):
        """Row bucket(j - i) of the table for every (query i, key j). -> (1, H, t, S)"""
        context_position = ops.expand_dims(ops.arange(query_length, dtype="int32"), 1)  # (t, 1)
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

    def call(self, hidden_states, additive_mask=None, key_value_states=None, position_bias=None, training=False):
        """Self-attention, or cross-attention over key_value_states (B, S, C). position_bias
        (1, H, t, S) given by an earlier block, or computed here (block 0), or none (cross).
        -> (B, t, C), the position bias for the next block"""
        current_states = hidden_states if key_value_states is None else key_value_states
        query = self.split_heads(self.q(hidden_states), ops.shape(hidden_states)[1])  # (B, H, t, D)
        key = self.split_heads(self.k(current_states), ops.shape(current_states)[1])  # (B, H, S, D)
        value = self.split_heads(self.v(current_states), ops.shape(current_states)[1])
        scores = ops.matmul(query, ops.swapaxes(key, 2, 3))  # (B, H, t, S), unscaled
        if position_bias is None and self.has_relative_attention_bias:
            position_bias = self.compute_bias(ops.shape(query)[2], ops.shape(key)[2])
        if position_bias is not None:
            scores = scores + position_bias
        if additive_mask is not None:
            scores = scores + additive_mask
        weights = self.dropout(ops.softmax(scores, axis=-1), training=training)  # (B, H, t, S)
        context = ops.transpose(ops.matmul(weights, value), (0, 2, 1, 3))  # (B, t, H, D)
        shape = ops.shape(context)
        context = ops.reshape(context, (shape[0], shape[1], self.num_heads * self.key_value_proj_dim))
        return self.o(context), position_bias  # (B, t, C)


class T5LayerSelfAttention(keras.layers.Layer):
    """x + dropout(SelfAttention(layer_norm(x)))."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__(dtype=dtype)
        self.SelfAttention = T5Attention(spec, has_relative_attention_bias, is_decoder, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, hidden_states, additive_mask=None, position_bias=None, training=False):  # (B, t, C)
        attention_output, position_bias = self.SelfAttention(self.layer_norm(hidden_states), additive_mask,
                                                             position_bias=position_bias, training=training)
        return hidden_states + self.dropout(attention_output, training=training), position_bias


class T5LayerCrossAttention(keras.layers.Layer):
    """y + dropout(EncDecAttention(layer_norm(y), keys and values from the encoder states))."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.EncDecAttention = T5Attention(spec, False, True, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, hidden_states, key_value_states, additive_mask=None, training=False):  # (B, t, C), (B, S, C)
        attention_output, _ = self.EncDecAttention(self.layer_norm(hidden_states), additive_mask,
                                                   key_value_states=key_value_states, training=training)
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
             training=False):
        hidden_states, position_bias = self.layer[0](hidden_states, additive_mask, position_bias,
                                                     training=training)  # (B, t, C)
        if self.is_decoder:
            hidden_states = self.layer[1](hidden_states, encoder_hidden_states, encoder_mask, training=training)
        return self.layer[-1](hidden_states, training=training), position_bias  # (B, t, C)


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
             training=False):
        """inputs_embeds (B, t, C); attention_mask (B, t) of these positions; the decoder's
        encoder_hidden_states (B, S, C) and their encoder_attention_mask (B, S). -> (B, t, C)"""
        dtype = self.compute_dtype
        if self.is_decoder:
            mask = causal_mask(ops.shape(inputs_embeds)[1], attention_mask, dtype)  # (B|1, 1, t, t)
        else:
            mask = padding_mask(attention_mask, dtype)  # (B, 1, 1, t) or None
        encoder_mask = padding_mask(encoder_attention_mask, dtype)  # (B, 1, 1, S) or None
        hidden_states = self.dropout(inputs_embeds, training=training)
        position_bias = None
        for block in self.block:
            hidden_states, position_bias = block(hidden_states, mask, position_bias, encoder_hidden_states,
                                                 encoder_mask, training=training)
        return self.dropout(self.final_layer_norm(hidden_states), training=training)  # (B, t, C)


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
        encoder_hidden_states = self.encoder(self.shared(input_ids), attention_mask, training=training)  # (B, S, C)
        sequence_output = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask,
                                       encoder_hidden_states, attention_mask, training=training)  # (B, T, C)
        if self.output_scale is not None:
            sequence_output = sequence_output * self.output_scale
        if self.spec.tie_word_embeddings:
            return {"logits": ops.matmul(sequence_output, ops.transpose(self.shared.embeddings))}  # (B, T, V)
        return {"logits": self.lm_head(sequence_output)}  # (B, T, V)
