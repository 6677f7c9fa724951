"""The Transformer (Vaswani et al. 2017) with torch.nn.Transformer's weights and semantics, between
token embeddings with sinusoidal positions and a Linear head (parity/specs/attention.py has the
equations).

Modules of their own, named and ordered as torch.nn's (`self_attn`, `multihead_attn`, `linear1`,
`linear2`, `norm1`..`norm3`, `dropout1`..`dropout3`; `_sa_block`, `_mha_block`, `_ff_block`), over
the MultiheadAttention of attention.py: Flax has no Transformer modules. Masks have torch's
polarity, True = masked out: the source padding and the causal target mask (True above the
diagonal). nnx.LayerNorm gets the spec's eps explicitly (Flax's default is 1e-6, torch's 1e-5)
and use_fast_variance=False (torch's mean((x - mean)^2), not the cancellation-prone
E[x^2] - E[x]^2); the feed-forward activation is the spec's, GELU exact (erf) as torch's, where
jax.nn.gelu defaults to the tanh approximation. A Python loop over the layers: jax.jit unrolls it.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.activations import activation
from jax_impl.models.attention import MultiheadAttention


def layer_norm(spec, dtype, rngs):
    """torch.nn.LayerNorm(d_model, eps): the spec's eps, two-pass variance."""
    return nnx.LayerNorm(spec.d_model, epsilon=spec.layer_norm_eps, use_fast_variance=False, dtype=dtype,
                         param_dtype=dtype, rngs=rngs)


def causal_mask(tokens):  # (B, T)
    """True where query i may not attend to key j: the future, j > i. -> (T, T) bool
    (lax iotas, not jnp.arange: jax2onnx loses a jnp.arange's symbolic length, measured)"""
    shape = (tokens.shape[1], tokens.shape[1])
    return jax.lax.broadcasted_iota(jnp.int32, shape, 1) > jax.lax.broadcasted_iota(jnp.int32, shape, 0)


def padding_mask(tokens, lengths):  # (B, S), (B,) or None
    """True at the PAD positions j >= lengths[b], torch's key_padding_mask. -> (B, S) bool or None"""
    if lengths is None:
        return None
    return jax.lax.broadcasted_iota(jnp.int32, tokens.shape, 1) >= lengths[:, None]


def cross_attention_weights(layer, x, tgt_mask, memory, key_padding_mask):  # (B, T, d), (T, T), (B, S, d), (B, S)
    """The decoder layer's cross-attention weights, averaged over the heads, for its input x: the
    query the layer's `multihead_attn` reads (after the masked self-attention block and its norm),
    run again with need_weights (the layer's call asks for none). Inference only (no dropout).
    -> (B, T, S)"""
    if layer.norm_first:
        query = layer.norm2(x + layer._sa_block(layer.norm1(x), tgt_mask))
    else:
        query = layer.norm1(x + layer._sa_block(x, tgt_mask))
    return layer.multihead_attn(query, memory, memory, key_padding_mask=key_padding_mask, need_weights=True)[1]


class TransformerEncoderLayer(nnx.Module):
    """torch.nn.TransformerEncoderLayer: self-attention, then the feed-forward block
    linear2(dropout(activation(linear1(x)))), each followed by dropout and a residual connection,
    with a LayerNorm after the sum (post-norm) or before the block (norm_first)."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.norm_first = spec.norm_first
        self.activation = activation(spec.activation)
        self.self_attn = MultiheadAttention(spec.d_model, spec.nhead, spec.dropout, True, dtype, rngs=rngs)
        self.linear1 = nnx.Linear(spec.d_model, spec.dim_feedforward, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.linear2 = nnx.Linear(spec.dim_feedforward, spec.d_model, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.norm1 = layer_norm(spec, dtype, rngs)
        self.norm2 = layer_norm(spec, dtype, rngs)
        self.dropout1 = nnx.Dropout(spec.dropout, rngs=rngs)
        self.dropout2 = nnx.Dropout(spec.dropout, rngs=rngs)

    def __call__(self, src, src_mask=None, src_key_padding_mask=None):  # (B, S, d_model)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask))
            x = self.norm2(x + self._ff_block(x))
        return x  # (B, S, d_model)

    def _sa_block(self, x, attn_mask, key_padding_mask):
        x = self.self_attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False,
                           attn_mask=attn_mask)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerEncoder(nnx.Module):
    """torch.nn.TransformerEncoder: `layers` copies of the layer, then the final `norm`."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.layers = nnx.List([TransformerEncoderLayer(spec, dtype, rngs=rngs)
                               for _ in range(spec.num_encoder_layers)])
        self.norm = layer_norm(spec, dtype, rngs)

    def __call__(self, src, src_mask=None, src_key_padding_mask=None):  # (B, S, d_model)
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask)
        return self.norm(x)  # (B, S, d_model)


class TransformerDecoderLayer(nnx.Module):
    """torch.nn.TransformerDecoderLayer: masked self-attention, cross-attention over the memory
    (`multihead_attn`), the feed-forward block; each with dropout, a residual connection and a
    LayerNorm (norm1, norm2, norm3), after the sum or before the block."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.norm_first = spec.norm_first
        self.activation = activation(spec.activation)
        self.self_attn = MultiheadAttention(spec.d_model, spec.nhead, spec.dropout, True, dtype, rngs=rngs)
        self.multihead_attn = MultiheadAttention(spec.d_model, spec.nhead, spec.dropout, True, dtype, rngs=rngs)
        self.linear1 = nnx.Linear(spec.d_model, spec.dim_feedforward, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.linear2 = nnx.Linear(spec.dim_feedforward, spec.d_model, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.norm1 = layer_norm(spec, dtype, rngs)
        self.norm2 = layer_norm(spec, dtype, rngs)
        self.norm3 = layer_norm(spec, dtype, rngs)
        self.dropout1 = nnx.Dropout(spec.dropout, rngs=rngs)
        self.dropout2 = nnx.Dropout(spec.dropout, rngs=rngs)
        self.dropout3 = nnx.Dropout(spec.dropout, rngs=rngs)

    def __call__(self, tgt, memory, tgt_mask=None, memory_key_padding_mask=None):  # (B, T, d), (B, S, d)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask)
            x = x + self._mha_block(self.norm2(x), memory, memory_key_padding_mask)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask))
            x = self.norm2(x + self._mha_block(x, memory, memory_key_padding_mask))
            x = self.norm3(x + self._ff_block(x))
        return x  # (B, T, d_model)

    def _sa_block(self, x, attn_mask):
        x = self.self_attn(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
        return self.dropout1(x)

    def _mha_block(self, x, memory, key_padding_mask):
        x = self.multihead_attn(x, memory, memory, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout3(x)


class TransformerDecoder(nnx.Module):
    """torch.nn.TransformerDecoder: `layers` copies of the layer, then the final `norm`."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.layers = nnx.List([TransformerDecoderLayer(spec, dtype, rngs=rngs)
                               for _ in range(spec.num_decoder_layers)])
        self.norm = layer_norm(spec, dtype, rngs)

    def __call__(self, tgt, memory, tgt_mask=None, memory_key_padding_mask=None):  # (B, T, d), (B, S, d)
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=memory_key_padding_mask)
        return self.norm(x)  # (B, T, d_model)


class Transformer(nnx.Module):
    """torch.nn.Transformer: the encoder over the source, the decoder over the target and the
    encoder's output (the memory). Called with torch's masks: (src, tgt, tgt_mask,
    src_key_padding_mask, memory_key_padding_mask) -> (B, T, d_model)."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.encoder = TransformerEncoder(spec, dtype, rngs=rngs)
        self.decoder = TransformerDecoder(spec, dtype, rngs=rngs)

    def __call__(self, src, tgt, tgt_mask=None, src_key_padding_mask=None,
                 memory_key_padding_mask=None):  # (B, S, d_model), (B, T, d_model)
        memory = self.encoder(src, src_key_padding_mask=src_key_padding_mask)  # (B, S, d_model)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask,
                            memory_key_padding_mask=memory_key_padding_mask)  # (B, T, d_model)


class Seq2SeqTransformer(nnx.Module):
    """Embeddings (scaled by sqrt(d_model)) plus sinusoidal positions, with dropout, into the
    Transformer; the head maps each decoder output to target-vocabulary logits."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.encoder_embedding = nnx.Embed(spec.source_vocab_size, spec.d_model, dtype=dtype, param_dtype=dtype,
                                           rngs=rngs)
        self.decoder_embedding = nnx.Embed(spec.target_vocab_size, spec.d_model, dtype=dtype, param_dtype=dtype,
                                           rngs=rngs)
        self.dropout = nnx.Dropout(spec.dropout, rngs=rngs)
        self.transformer = Transformer(spec, dtype, rngs=rngs)
        self.head = nnx.Linear(spec.d_model, spec.target_vocab_size, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def embed(self, embedding, tokens):  # (B, N) int
        """E x sqrt(d_model) + PE, then dropout. The table is looked up at positions 0..N-1 (a gather,
        not a slice: to torch.export a slice to a symbolic N guards N <= max_len, to jax.export it
        has the length min(max_len, N)). -> (B, N, d_model)"""
        x = embedding(tokens) * self.spec.embedding_scale  # (B, N, d_model)
        table = jnp.asarray(self.spec.positional_encoding(), dtype=x.dtype)  # (max_len, d_model)
        # lax.iota, not jnp.arange: jax2onnx loses the symbolic length of a jnp.arange (measured).
        positions = jnp.take(table, jax.lax.iota(jnp.int32, tokens.shape[1]), axis=0)  # (N, d_model)
        return self.dropout(x + positions)

    def __call__(self, tokens, decoder_tokens, lengths=None):  # (B, S) int, (B, T) int, (B,)
        padding = padding_mask(tokens, lengths)  # (B, S) True = PAD, or None
        x = self.transformer(self.embed(self.encoder_embedding, tokens),
                             self.embed(self.decoder_embedding, decoder_tokens),
                             tgt_mask=causal_mask(decoder_tokens), src_key_padding_mask=padding,
                             memory_key_padding_mask=padding)  # (B, T, d_model)
        return {"logits": self.head(x)}  # (B, T, V)

    def encode(self, tokens, lengths=None):  # (B, S) int, (B,)
        """The encoder half, for parity.decoding. -> memory (B, S, d_model), mask (B, S) (True =
        PAD), state (the ids fed so far (B, max_len), PAD-filled; how many (B,))."""
        if lengths is None:
            lengths = jnp.full(tokens.shape[:1], tokens.shape[1], dtype=tokens.dtype)
        padding = padding_mask(tokens, lengths)  # (B, S)
        memory = self.transformer.encoder(self.embed(self.encoder_embedding, tokens),
                                          src_key_padding_mask=padding)  # (B, S, d_model)
        fed = jnp.full((tokens.shape[0], self.spec.max_len), self.spec.PAD, dtype=tokens.dtype)
        return memory, padding, (fed, jnp.zeros_like(lengths))

    def decode_step(self, previous_ids, state, memory, mask):  # (B,) int, (fed, count), (B, S, d), (B, S)
        """Feeds previous_ids at slot `count` and runs the decoder over all max_len slots (static
        shapes; the causal mask keeps later slots out of earlier ones), reading the output at that
        slot. -> logits (B, V), the last layer's cross-attention weights there (B, S), state"""
        fed, count = state  # (B, max_len), (B,)
        slot = jax.lax.broadcasted_iota(jnp.int32, fed.shape, 1) == count[:, None]  # (B, max_len)
        fed = jnp.where(slot, previous_ids[:, None].astype(fed.dtype), fed)
        x = self.embed(self.decoder_embedding, fed)  # (B, max_len, d_model)
        tgt_mask = causal_mask(fed)
        *layers, last = self.transformer.decoder.layers
        for layer in layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=mask)
        weights = cross_attention_weights(last, x, tgt_mask, memory, mask)  # (B, max_len, S)
        x = self.transformer.decoder.norm(last(x, memory, tgt_mask=tgt_mask,
                                               memory_key_padding_mask=mask))  # (B, max_len, d_model)
        here = slot[:, :, None].astype(x.dtype)  # (B, max_len, 1): one-hot at the slot
        logits = self.head(jnp.sum(x * here, axis=1))  # (B, V)
        return logits, jnp.sum(weights * here, axis=1), (fed, count + 1)
