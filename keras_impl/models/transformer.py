"""The Transformer (Vaswani et al. 2017) with torch.nn.Transformer's weights and semantics, between
token embeddings with sinusoidal positions and a Linear head (parity/specs/attention.py has the
equations).

Layers of their own, named and ordered as torch.nn's (`self_attn`, `multihead_attn`, `linear1`,
`linear2`, `norm1`..`norm3`, `dropout1`..`dropout3`; `_sa_block`, `_mha_block`, `_ff_block`), over
the MultiheadAttention of attention.py: Keras has no Transformer layers (keras_hub's
TransformerEncoder/Decoder take no packed in_proj_weight and fix their own norm placement). Masks
have torch's polarity, True = masked out: the source padding and the causal target mask (True
above the diagonal). LayerNormalization gets the spec's eps explicitly (Keras' default is 1e-3,
torch's 1e-5); the feed-forward activation is the spec's, GELU exact (erf) as torch's.
"""
import keras
from keras import ops

from keras_impl.activations import activation
from keras_impl.models.attention import MultiheadAttention


def layer_norm(spec, dtype):
    """torch.nn.LayerNorm(d_model, eps): the spec's eps (Keras' default is 1e-3)."""
    return keras.layers.LayerNormalization(epsilon=spec.layer_norm_eps, dtype=dtype)


def causal_mask(tokens):  # (B, T)
    """True where query i may not attend to key j: the future, j > i. -> (T, T) bool"""
    positions = ops.arange(ops.shape(tokens)[1])
    return positions[None, :] > positions[:, None]


def padding_mask(tokens, lengths):  # (B, S), (B,) or None
    """True at the PAD positions j >= lengths[b], torch's key_padding_mask. -> (B, S) bool or None"""
    if lengths is None:
        return None
    return ops.arange(ops.shape(tokens)[1])[None, :] >= ops.cast(lengths, "int32")[:, None]


def cross_attention_weights(layer, x, tgt_mask, memory, key_padding_mask):  # (B, T, d), (T, T), (B, S, d), (B, S)
    """The decoder layer's cross-attention weights, averaged over the heads, for its input x: the
    query the layer's `multihead_attn` reads (after the masked self-attention block and its norm),
    run again with need_weights (the layer's call asks for none). Inference only (no dropout).
    -> (B, T, S)"""
    if layer.norm_first:
        query = layer.norm2(x + layer._sa_block(layer.norm1(x), tgt_mask, False))
    else:
        query = layer.norm1(x + layer._sa_block(x, tgt_mask, False))
    return layer.multihead_attn(query, memory, memory, key_padding_mask=key_padding_mask, need_weights=True)[1]


class TransformerEncoderLayer(keras.layers.Layer):
    """torch.nn.TransformerEncoderLayer: self-attention, then the feed-forward block
    linear2(dropout(activation(linear1(x)))), each followed by dropout and a residual connection,
    with a LayerNorm after the sum (post-norm) or before the block (norm_first)."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.norm_first = spec.norm_first
        self.activation = activation(spec.activation)
        self.self_attn = MultiheadAttention(spec.d_model, spec.nhead, spec.dropout, True, dtype)
        self.linear1 = keras.layers.Dense(spec.dim_feedforward, dtype=dtype)
        self.dropout = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.linear2 = keras.layers.Dense(spec.d_model, dtype=dtype)
        self.norm1 = layer_norm(spec, dtype)
        self.norm2 = layer_norm(spec, dtype)
        self.dropout1 = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.dropout2 = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.built = True  # no variables of its own; the children build on their first call

    def call(self, src, src_mask=None, src_key_padding_mask=None, training=False):  # (B, S, d_model)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, training)
            x = x + self._ff_block(self.norm2(x), training)
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, training))
            x = self.norm2(x + self._ff_block(x, training))
        return x  # (B, S, d_model)

    def _sa_block(self, x, attn_mask, key_padding_mask, training):
        x = self.self_attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False, attn_mask=attn_mask,
                           training=training)[0]
        return self.dropout1(x, training=training)

    def _ff_block(self, x, training):
        x = self.linear2(self.dropout(self.activation(self.linear1(x)), training=training))
        return self.dropout2(x, training=training)


class TransformerEncoder(keras.layers.Layer):
    """torch.nn.TransformerEncoder: `layers` copies of the layer, then the final `norm`."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.layers = [TransformerEncoderLayer(spec, dtype) for _ in range(spec.num_encoder_layers)]
        self.norm = layer_norm(spec, dtype)
        self.built = True

    def call(self, src, src_mask=None, src_key_padding_mask=None, training=False):  # (B, S, d_model)
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask, training=training)
        return self.norm(x)  # (B, S, d_model)


class TransformerDecoderLayer(keras.layers.Layer):
    """torch.nn.TransformerDecoderLayer: masked self-attention, cross-attention over the memory
    (`multihead_attn`), the feed-forward block; each with dropout, a residual connection and a
    LayerNorm (norm1, norm2, norm3), after the sum or before the block."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.norm_first = spec.norm_first
        self.activation = activation(spec.activation)
        self.self_attn = MultiheadAttention(spec.d_model, spec.nhead, spec.dropout, True, dtype)
        self.multihead_attn = MultiheadAttention(spec.d_model, spec.nhead, spec.dropout, True, dtype)
        self.linear1 = keras.layers.Dense(spec.dim_feedforward, dtype=dtype)
        self.dropout = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.linear2 = keras.layers.Dense(spec.d_model, dtype=dtype)
        self.norm1 = layer_norm(spec, dtype)
        self.norm2 = layer_norm(spec, dtype)
        self.norm3 = layer_norm(spec, dtype)
        self.dropout1 = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.dropout2 = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.dropout3 = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.built = True

    def call(self, tgt, memory, tgt_mask=None, memory_key_padding_mask=None, training=False):  # (B, T, d), (B, S, d)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, training)
            x = x + self._mha_block(self.norm2(x), memory, memory_key_padding_mask, training)
            x = x + self._ff_block(self.norm3(x), training)
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, training))
            x = self.norm2(x + self._mha_block(x, memory, memory_key_padding_mask, training))
            x = self.norm3(x + self._ff_block(x, training))
        return x  # (B, T, d_model)

    def _sa_block(self, x, attn_mask, training):
        x = self.self_attn(x, x, x, need_weights=False, attn_mask=attn_mask, training=training)[0]
        return self.dropout1(x, training=training)

    def _mha_block(self, x, memory, key_padding_mask, training):
        x = self.multihead_attn(x, memory, memory, key_padding_mask=key_padding_mask, need_weights=False,
                                training=training)[0]
        return self.dropout2(x, training=training)

    def _ff_block(self, x, training):
        x = self.linear2(self.dropout(self.activation(self.linear1(x)), training=training))
        return self.dropout3(x, training=training)


class TransformerDecoder(keras.layers.Layer):
    """torch.nn.TransformerDecoder: `layers` copies of the layer, then the final `norm`."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.layers = [TransformerDecoderLayer(spec, dtype) for _ in range(spec.num_decoder_layers)]
        self.norm = layer_norm(spec, dtype)
        self.built = True

    def call(self, tgt, memory, tgt_mask=None, memory_key_padding_mask=None, training=False):  # (B, T, d), (B, S, d)
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=memory_key_padding_mask, training=training)
        return self.norm(x)  # (B, T, d_model)


class Transformer(keras.layers.Layer):
    """torch.nn.Transformer: the encoder over the source, the decoder over the target and the
    encoder's output (the memory). Called with torch's masks: (src, tgt, tgt_mask,
    src_key_padding_mask, memory_key_padding_mask) -> (B, T, d_model)."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.encoder = TransformerEncoder(spec, dtype)
        self.decoder = TransformerDecoder(spec, dtype)
        self.built = True

    def call(self, src, tgt, tgt_mask=None, src_key_padding_mask=None, memory_key_padding_mask=None,
             training=False):  # (B, S, d_model), (B, T, d_model)
        memory = self.encoder(src, src_key_padding_mask=src_key_padding_mask, training=training)  # (B, S, d_model)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_key_padding_mask=memory_key_padding_mask,
                            training=training)  # (B, T, d_model)


class Seq2SeqTransformer(keras.Model):
    """Embeddings (scaled by sqrt(d_model)) plus sinusoidal positions, with dropout, into the
    Transformer; the head maps each decoder output to target-vocabulary logits."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.encoder_embedding = keras.layers.Embedding(spec.source_vocab_size, spec.d_model, dtype=dtype)
        self.decoder_embedding = keras.layers.Embedding(spec.target_vocab_size, spec.d_model, dtype=dtype)
        self.dropout = keras.layers.Dropout(spec.dropout, dtype=dtype)
        self.transformer = Transformer(spec, dtype)
        self.head = keras.layers.Dense(spec.target_vocab_size, dtype=dtype)

    def embed(self, embedding, tokens, training=False):  # (B, N) int64
        """E x sqrt(d_model) + PE, then dropout. The table is looked up at positions 0..N-1 (a gather,
        not a slice: to torch.export a slice to a symbolic N guards N <= max_len, to jax.export it
        has the length min(max_len, N)). -> (B, N, d_model)"""
        x = embedding(tokens) * self.spec.embedding_scale  # (B, N, d_model)
        table = ops.convert_to_tensor(self.spec.positional_encoding(), dtype=x.dtype)  # (max_len, d_model)
        positions = ops.take(table, ops.arange(ops.shape(tokens)[1]), axis=0)  # (N, d_model)
        return self.dropout(x + positions, training=training)

    def call(self, tokens, decoder_tokens, lengths=None, training=False):  # (B, S) int64, (B, T) int64, (B,)
        padding = padding_mask(tokens, lengths)  # (B, S) True = PAD, or None
        x = self.transformer(self.embed(self.encoder_embedding, tokens, training),
                             self.embed(self.decoder_embedding, decoder_tokens, training),
                             tgt_mask=causal_mask(decoder_tokens), src_key_padding_mask=padding,
                             memory_key_padding_mask=padding, training=training)  # (B, T, d_model)
        return {"logits": self.head(x)}  # (B, T, V)

    def encode(self, tokens, lengths=None):  # (B, S) int64, (B,)
        """The encoder half, for parity.decoding. -> memory (B, S, d_model), mask (B, S) (True =
        PAD), state (the ids fed so far (B, max_len), PAD-filled; how many (B,))."""
        if lengths is None:
            lengths = ops.full(ops.shape(tokens)[:1], ops.shape(tokens)[1], dtype="int64")
        padding = padding_mask(tokens, lengths)  # (B, S)
        memory = self.transformer.encoder(self.embed(self.encoder_embedding, tokens),
                                          src_key_padding_mask=padding)  # (B, S, d_model)
        fed = ops.full((ops.shape(tokens)[0], self.spec.max_len), self.spec.PAD, dtype="int64")
        return memory, padding, (fed, ops.zeros_like(lengths, dtype="int64"))

    def decode_step(self, previous_ids, state, memory, mask):  # (B,) int64, (fed, count), (B, S, d), (B, S)
        """Feeds previous_ids at slot `count` and runs the decoder over all max_len slots (static
        shapes; the causal mask keeps later slots out of earlier ones), reading the output at that
        slot. -> logits (B, V), the last layer's cross-attention weights there (B, S), state"""
        fed, count = state  # (B, max_len), (B,)
        slot = ops.arange(ops.shape(fed)[1], dtype="int64")[None, :] == ops.cast(count, "int64")[:, None]
        fed = ops.where(slot, ops.cast(previous_ids, "int64")[:, None], ops.cast(fed, "int64"))
        x = self.embed(self.decoder_embedding, fed)  # (B, max_len, d_model)
        tgt_mask = causal_mask(fed)
        *layers, last = self.transformer.decoder.layers
        for layer in layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=mask)
        weights = cross_attention_weights(last, x, tgt_mask, memory, mask)  # (B, max_len, S)
        x = self.transformer.decoder.norm(last(x, memory, tgt_mask=tgt_mask,
                                               memory_key_padding_mask=mask))  # (B, max_len, d_model)
        here = ops.cast(slot, x.dtype)[:, :, None]  # (B, max_len, 1): one-hot at the slot
        logits = self.head(ops.sum(x * here, axis=1))  # (B, V)
        return logits, ops.sum(weights * here, axis=1), (fed, count + 1)
