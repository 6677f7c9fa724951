"""BERT with Hugging Face transformers' module structure and names: BertModel and BertForMaskedLM.

The equations, the mask semantics and the canonical names are in parity/specs/bert.py. The
classes are transformers' (modeling_bert.py), reduced to the encoder-only path: no cache, no
cross-attention, no chunking. Attention is written out rather than keras.layers.MultiHeadAttention:
its EinsumDense projections hold (H, n, d) kernels (not transformers' q, k, v Linears), its output
projection sits inside it (transformers' is BertSelfOutput's `dense`), and its masked softmax
adds -1e9 to masked scores where transformers adds the dtype's minimum.

Keras layers have a read-only `output` property (a functional model's symbolic output):
BertAttention and BertLayer shadow it with a class attribute so that transformers' attribute
name `output` (and so the canonical path `attention.output.dense`) can hold a sublayer.
"""
import keras
import numpy as np
from keras import ops

from keras_impl.activations import activation


def extended_attention_mask(attention_mask, dtype):  # (B, T) 0/1
    """transformers' additive mask: 0 where a key is attended, the dtype's minimum where not
    (finite, not -inf: a fully masked row stays finite and attends uniformly). -> (B, 1, 1, T)"""
    fill = ops.where(ops.cast(attention_mask, "bool"), ops.zeros((), dtype=dtype),
                     ops.full((), float(np.finfo(dtype).min), dtype=dtype))  # (B, T)
    # expand_dims, not [:, None, None, :]: TFLite has no strided slice that adds axes
    return ops.expand_dims(fill, (1, 2))  # (B, 1, 1, T): every head, every query


def layer_norm(spec, dtype):
    """transformers' nn.LayerNorm(hidden_size, eps=layer_norm_eps): Keras' default epsilon is 1e-3."""
    return keras.layers.LayerNormalization(epsilon=spec.layer_norm_eps, dtype=dtype)


class BertEmbeddings(keras.layers.Layer):
    """Word + token type + position embeddings, LayerNorm, dropout. transformers' `position_ids`
    and `token_type_ids` buffers are non-persistent (not in its state_dict): computed here."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.padding_idx = spec.pad_token_id
        self.word_embeddings = keras.layers.Embedding(spec.vocab_size, spec.hidden_size, dtype=dtype)
        self.position_embeddings = keras.layers.Embedding(spec.max_position_embeddings, spec.hidden_size, dtype=dtype)
        self.token_type_embeddings = keras.layers.Embedding(spec.type_vocab_size, spec.hidden_size, dtype=dtype)
        self.LayerNorm = layer_norm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.hidden_dropout_prob, dtype=dtype)

    def call(self, input_ids, token_type_ids=None, training=False):  # (B, T) int64, (B, T) int64
        position_ids = ops.arange(ops.shape(input_ids)[1])  # (T,)
        if token_type_ids is None:
            token_type_ids = ops.zeros_like(input_ids)
        inputs_embeds = self.word_embeddings(input_ids)  # (B, T, H)
        if self.padding_idx is not None:
            # torch.nn.Embedding's padding_idx, which keras.layers.Embedding lacks: that row takes
            # part in the forward pass, but its gradient is always 0.
            padding = ops.expand_dims(input_ids == self.padding_idx, -1)  # (B, T, 1)
            inputs_embeds = ops.where(padding, ops.stop_gradient(inputs_embeds), inputs_embeds)
        # transformers' order of the sums (rounding): (words + types) + positions
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        embeddings = embeddings + self.position_embeddings(position_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(embeddings), training=training)  # (B, T, H)


class BertSelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product self-attention over q, k, v Linears named as transformers'.
    The output projection is BertSelfOutput's, outside this layer."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.num_attention_heads = spec.num_attention_heads
        self.attention_head_size = spec.head_size
        self.scaling = spec.head_size ** -0.5
        self.query = keras.layers.Dense(spec.hidden_size, dtype=dtype)
        self.key = keras.layers.Dense(spec.hidden_size, dtype=dtype)
        self.value = keras.layers.Dense(spec.hidden_size, dtype=dtype)
        self.dropout = keras.layers.Dropout(spec.attention_probs_dropout_prob, dtype=dtype)

    def heads(self, x, batch, length):  # (B, T, H)
        """-> (B, n, T, d): the hidden axis split into heads, heads before positions. `batch` and
        `length` come from the layer's input: tf2onnx folds the Dense layers' internal 2-D reshape
        into the graph so that ops.shape of their output reads (B * T, H) (measured)."""
        return ops.transpose(ops.reshape(x, (batch, length, self.num_attention_heads, self.attention_head_size)),
                             (0, 2, 1, 3))

    def call(self, hidden_states, attention_mask=None, training=False):  # (B, T, H), (B, 1, 1, T) additive
        batch, length = ops.shape(hidden_states)[0], ops.shape(hidden_states)[1]
        query = self.heads(self.query(hidden_states), batch, length)  # (B, n, T, d)
        key = self.heads(self.key(hidden_states), batch, length)  # (B, n, T, d)
        value = self.heads(self.value(hidden_states), batch, length)  # (B, n, T, d)
        scores = ops.matmul(query, ops.transpose(key, (0, 1, 3, 2))) * self.scaling  # (B, n, T, T)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)  # (B, n, T, T)
        context = ops.transpose(ops.matmul(probs, value), (0, 2, 1, 3))  # (B, T, n, d)
        return ops.reshape(context, ops.shape(hidden_states))  # (B, T, H)


class BertSelfOutput(keras.layers.Layer):
    """The attention's output projection, dropout, residual and post-norm."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.dense = keras.layers.Dense(spec.hidden_size, dtype=dtype)
        self.LayerNorm = layer_norm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.hidden_dropout_prob, dtype=dtype)

    def call(self, hidden_states, input_tensor, training=False):  # (B, T, H), (B, T, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + input_tensor)  # (B, T, H)


class BertAttention(keras.layers.Layer):
    output = None  # shadows keras.layers.Layer.output (read-only): see the module docstring

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.self = BertSelfAttention(spec, dtype)
        self.output = BertSelfOutput(spec, dtype)

    def call(self, hidden_states, attention_mask=None, training=False):  # (B, T, H), (B, 1, 1, T)
        return self.output(self.self(hidden_states, attention_mask, training=training), hidden_states,
                           training=training)  # (B, T, H)


class BertIntermediate(keras.layers.Layer):
    """The feed-forward block's expansion and activation (`hidden_act`, passed explicitly)."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.dense = keras.layers.Dense(spec.intermediate_size, dtype=dtype)
        self.intermediate_act_fn = activation(spec.activation)

    def call(self, hidden_states):  # (B, T, H)
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, T, I)


class BertOutput(keras.layers.Layer):
    """The feed-forward block's projection back, dropout, residual and post-norm."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.dense = keras.layers.Dense(spec.hidden_size, dtype=dtype)
        self.LayerNorm = layer_norm(spec, dtype)
        self.dropout = keras.layers.Dropout(spec.hidden_dropout_prob, dtype=dtype)

    def call(self, hidden_states, input_tensor, training=False):  # (B, T, I), (B, T, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states), training=training) + input_tensor)  # (B, T, H)


class BertLayer(keras.layers.Layer):
    output = None  # shadows keras.layers.Layer.output (read-only): see the module docstring

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.attention = BertAttention(spec, dtype)
        self.intermediate = BertIntermediate(spec, dtype)
        self.output = BertOutput(spec, dtype)

    def call(self, hidden_states, attention_mask=None, training=False):  # (B, T, H), (B, 1, 1, T)
        attention_output = self.attention(hidden_states, attention_mask, training=training)  # (B, T, H)
        return self.output(self.intermediate(attention_output), attention_output, training=training)  # (B, T, H)


class BertEncoder(keras.layers.Layer):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.layer = [BertLayer(spec, dtype) for _ in range(spec.num_hidden_layers)]

    def call(self, hidden_states, attention_mask=None, training=False):  # (B, T, H), (B, 1, 1, T)
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask, training=training)  # (B, T, H)
        return hidden_states


class BertPooler(keras.layers.Layer):
    """tanh(dense) of the first token's final hidden state ([CLS])."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.dense = keras.layers.Dense(spec.hidden_size, dtype=dtype)

    def call(self, hidden_states):  # (B, T, H)
        return ops.tanh(self.dense(hidden_states[:, 0]))  # (B, H)


class BertPredictionHeadTransform(keras.layers.Layer):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.dense = keras.layers.Dense(spec.hidden_size, dtype=dtype)
        self.transform_act_fn = activation(spec.activation)
        self.LayerNorm = layer_norm(spec, dtype)

    def call(self, hidden_states):  # (B, T, H)
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))  # (B, T, H)


class BertLMPredictionHead(keras.layers.Layer):
    """The transform, then the decoder: the word embedding matrix (tied, passed in: the canonical
    state holds it once, where transformers' decoder Linear shares its Parameter) plus `bias`."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.transform = BertPredictionHeadTransform(spec, dtype)
        self.bias = self.add_weight(shape=(spec.vocab_size,), initializer="zeros", name="bias", dtype=dtype)

    def call(self, hidden_states, decoder_weight):  # (B, T, H), (V, H)
        return ops.matmul(self.transform(hidden_states), ops.transpose(decoder_weight)) + self.bias  # (B, T, V)


class BertOnlyMLMHead(keras.layers.Layer):
    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.predictions = BertLMPredictionHead(spec, dtype)

    def call(self, sequence_output, decoder_weight):  # (B, T, H), (V, H)
        return self.predictions(sequence_output, decoder_weight)  # (B, T, V)


class BertModel(keras.Model):
    """Embeddings, the encoder stack and (unless `add_pooling_layer` is False) the pooler."""

    def __init__(self, spec, dtype, add_pooling_layer=True):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.embeddings = BertEmbeddings(spec, dtype)
        self.encoder = BertEncoder(spec, dtype)
        self.pooler = BertPooler(spec, dtype) if add_pooling_layer else None

    def call(self, input_ids, attention_mask=None, token_type_ids=None, training=False):  # (B, T) each
        embedding_output = self.embeddings(input_ids, token_type_ids, training=training)  # (B, T, H)
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, self.compute_dtype)
        sequence_output = self.encoder(embedding_output, mask, training=training)  # (B, T, H)
        if self.pooler is None:
            return {"last_hidden_state": sequence_output}
        return {"last_hidden_state": sequence_output, "pooler_output": self.pooler(sequence_output)}  # (B, H)


class BertForMaskedLM(keras.Model):
    """BertModel without its pooler (`bert`) and the masked-LM head (`cls`)."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.bert = BertModel(spec, dtype, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(spec, dtype)

    def call(self, input_ids, attention_mask=None, token_type_ids=None, training=False):  # (B, T) each
        sequence_output = self.bert(input_ids, attention_mask, token_type_ids,
                                    training=training)["last_hidden_state"]  # (B, T, H)
        return {"logits": self.cls(sequence_output, self.bert.embeddings.word_embeddings.embeddings)}  # (B, T, V)


def bert(spec, dtype):
    """The model of `spec.head`: BertModel ("none") or BertForMaskedLM ("mlm")."""
    return BertModel(spec, dtype) if spec.head == "none" else BertForMaskedLM(spec, dtype)
