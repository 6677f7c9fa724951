"""The Transformer (Vaswani et al. 2017): torch.nn.Transformer itself between token embeddings with
sinusoidal positions and a Linear head (parity/specs/attention.py has the equations).

torch.nn's classes are the reference: the subclasses below only configure them from the spec
(batch first, the spec's eps, activation and norm placement) and assemble nn.Transformer from them,
so the forward passes are torch's own, fast paths included (tests/test_transformer.py checks the
model against a plain torch.nn.Transformer). Masks have torch's polarity, True = masked out: the
source padding (`src_key_padding_mask`, `memory_key_padding_mask`) and the causal target mask
(`tgt_mask`, True above the diagonal), passed with tgt_is_causal=True: without that hint torch
compares the mask with its own causal mask on every call, a data-dependent check torch.export
cannot trace.

One departure from nn.Transformer's defaults: the encoder is built with enable_nested_tensor=False.
With it (the default), torch runs the encoder in eval mode without gradients on nested tensors
whenever a padding mask is given: every layer's output is then a NestedTensor (the trace's
forward hooks cannot read it: "NestedTensorImpl doesn't support sizes") and the memory is 0 at
the padded positions, where Keras, Flax and torch's own training mode compute values there. The
decoder never attends to those positions (memory_key_padding_mask), so the logits are the same
either way: tests/test_transformer.py checks them against a default nn.Transformer, nested tensors
and all.
"""
import torch
from torch import nn


def layer_norm(spec, dtype):
    """torch.nn.LayerNorm(d_model, eps): the final norm of the encoder and of the decoder."""
    return nn.LayerNorm(spec.d_model, eps=spec.layer_norm_eps, dtype=dtype)


def causal_mask(tokens):  # (B, T)
    """True where query i may not attend to key j: the future, j > i. -> (T, T) bool"""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    return positions[None, :] > positions[:, None]


def padding_mask(tokens, lengths):  # (B, S), (B,) or None
    """True at the PAD positions j >= lengths[b], torch's key_padding_mask. -> (B, S) bool or None"""
    if lengths is None:
        return None
    return torch.arange(tokens.shape[1], device=tokens.device)[None, :] >= lengths[:, None]


def cross_attention_weights(layer, x, tgt_mask, memory, key_padding_mask):  # (B, T, d), (T, T), (B, S, d), (B, S)
    """The decoder layer's cross-attention weights, averaged over the heads, for its input x: the
    query the layer's `multihead_attn` reads (after the masked self-attention block and its norm),
    run again with need_weights (the layer's forward asks for none). Inference only (no dropout).
    -> (B, T, S)"""
    if layer.norm_first:
        query = layer.norm2(x + layer._sa_block(layer.norm1(x), tgt_mask, None, True))
    else:
        query = layer.norm1(x + layer._sa_block(x, tgt_mask, None, True))
    return layer.multihead_attn(query, memory, memory, key_padding_mask=key_padding_mask, need_weights=True)[1]


class TransformerEncoderLayer(nn.TransformerEncoderLayer):
    """torch.nn.TransformerEncoderLayer: self-attention, then the feed-forward block
    linear2(dropout(activation(linear1(x)))), each followed by dropout and a residual connection,
    with a LayerNorm after the sum (post-norm) or before the block (norm_first)."""

    def __init__(self, spec, dtype):
        super().__init__(spec.d_model, spec.nhead, spec.dim_feedforward, spec.dropout, spec.activation,
                         spec.layer_norm_eps, batch_first=True, norm_first=spec.norm_first, dtype=dtype)


class TransformerEncoder(nn.TransformerEncoder):
    """torch.nn.TransformerEncoder: `layers` copies of the layer, then the final `norm`; dense
    tensors throughout (enable_nested_tensor=False, as the module docstring says why)."""

    def __init__(self, spec, dtype):
        super().__init__(TransformerEncoderLayer(spec, dtype), spec.num_encoder_layers,
                         layer_norm(spec, dtype), enable_nested_tensor=False)


class TransformerDecoderLayer(nn.TransformerDecoderLayer):
    """torch.nn.TransformerDecoderLayer: masked self-attention, cross-attention over the memory
    (`multihead_attn`), the feed-forward block; each with dropout, a residual connection and a
    LayerNorm (norm1, norm2, norm3), after the sum or before the block."""

    def __init__(self, spec, dtype):
        super().__init__(spec.d_model, spec.nhead, spec.dim_feedforward, spec.dropout, spec.activation,
                         spec.layer_norm_eps, batch_first=True, norm_first=spec.norm_first, dtype=dtype)


class TransformerDecoder(nn.TransformerDecoder):
    """torch.nn.TransformerDecoder: `layers` copies of the layer, then the final `norm`."""

    def __init__(self, spec, dtype):
        super().__init__(TransformerDecoderLayer(spec, dtype), spec.num_decoder_layers,
                         layer_norm(spec, dtype))


class Transformer(nn.Transformer):
    """torch.nn.Transformer: the encoder over the source, the decoder over the target and the
    encoder's output (the memory). Called as torch's: (src, tgt, src_mask, tgt_mask, memory_mask,
    src_key_padding_mask, tgt_key_padding_mask, memory_key_padding_mask) -> (B, T, d_model)."""

    def __init__(self, spec, dtype):
        super().__init__(spec.d_model, spec.nhead, spec.num_encoder_layers, spec.num_decoder_layers,
                         spec.dim_feedforward, spec.dropout, spec.activation, TransformerEncoder(spec, dtype),
                         TransformerDecoder(spec, dtype), spec.layer_norm_eps, batch_first=True,
                         norm_first=spec.norm_first, dtype=dtype)


class Seq2SeqTransformer(nn.Module):
    """Embeddings (scaled by sqrt(d_model)) plus sinusoidal positions, with dropout, into the
    Transformer; the head maps each decoder output to target-vocabulary logits."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.encoder_embedding = nn.Embedding(spec.source_vocab_size, spec.d_model, dtype=dtype)
        self.decoder_embedding = nn.Embedding(spec.target_vocab_size, spec.d_model, dtype=dtype)
        self.dropout = nn.Dropout(spec.dropout)
        self.transformer = Transformer(spec, dtype)
        self.head = nn.Linear(spec.d_model, spec.target_vocab_size, dtype=dtype)
        # The sinusoidal table as a buffer, not a weight (persistent=False: not in the state dict).
        # Made from numpy inside forward instead, torch.compile under inference_mode fails its own
        # guard ("Guard failed on the same frame it was created", torch 2.13, measured).
        self.register_buffer("positions", torch.empty(spec.max_len, spec.d_model, dtype=dtype), persistent=False)
        self.init_buffers()

    def init_buffers(self):
        """Fills the positions table (again after `to_empty`, which leaves buffers unset)."""
        with torch.no_grad():
            self.positions.copy_(torch.tensor(self.spec.positional_encoding()))

    def embed(self, embedding, tokens):  # (B, N) int64
        """E x sqrt(d_model) + PE, then dropout. The table is looked up at positions 0..N-1 (a gather,
        not a slice: to torch.export a slice to a symbolic N guards N <= max_len, to jax.export it
        has the length min(max_len, N)). -> (B, N, d_model)"""
        x = embedding(tokens) * self.spec.embedding_scale  # (B, N, d_model)
        positions = self.positions[torch.arange(tokens.shape[1], device=x.device)]  # (N, d_model)
        return self.dropout(x + positions)

    def forward(self, tokens, decoder_tokens, lengths=None):  # (B, S) int64, (B, T) int64, (B,)
        padding = padding_mask(tokens, lengths)  # (B, S) True = PAD, or None
        x = self.transformer(self.embed(self.encoder_embedding, tokens), self.embed(self.decoder_embedding,
                                                                                    decoder_tokens),
                             tgt_mask=causal_mask(decoder_tokens), src_key_padding_mask=padding,
                             memory_key_padding_mask=padding, tgt_is_causal=True)  # (B, T, d_model)
        return {"logits": self.head(x)}  # (B, T, V)

    def encode(self, tokens, lengths=None):  # (B, S) int64, (B,)
        """The encoder half, for parity.decoding. -> memory (B, S, d_model), mask (B, S) (True =
        PAD), state (the ids fed so far (B, max_len), PAD-filled; how many (B,))."""
        if lengths is None:
            lengths = torch.full(tokens.shape[:1], tokens.shape[1], device=tokens.device)
        padding = padding_mask(tokens, lengths)  # (B, S)
        memory = self.transformer.encoder(self.embed(self.encoder_embedding, tokens),
                                          src_key_padding_mask=padding)  # (B, S, d_model)
        fed = torch.full((tokens.shape[0], self.spec.max_len), self.spec.PAD, device=tokens.device)
        return memory, padding, (fed, torch.zeros_like(lengths))

    def decode_step(self, previous_ids, state, memory, mask):  # (B,) int64, (fed, count), (B, S, d), (B, S)
        """Feeds previous_ids at slot `count` and runs the decoder over all max_len slots (static
        shapes; the causal mask keeps later slots out of earlier ones), reading the output at that
        slot. -> logits (B, V), the last layer's cross-attention weights there (B, S), state"""
        fed, count = state  # (B, max_len), (B,)
        slot = torch.arange(fed.shape[1], device=fed.device)[None, :] == count[:, None]  # (B, max_len)
        fed = torch.where(slot, previous_ids[:, None], fed)
        x = self.embed(self.decoder_embedding, fed)  # (B, max_len, d_model)
        tgt_mask = causal_mask(fed)
        *layers, last = self.transformer.decoder.layers
        for layer in layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=mask, tgt_is_causal=True)
        weights = cross_attention_weights(last, x, tgt_mask, memory, mask)  # (B, max_len, S)
        x = self.transformer.decoder.norm(last(x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=mask,
                                               tgt_is_causal=True))  # (B, max_len, d_model)
        here = slot[:, :, None].to(x.dtype)  # (B, max_len, 1): one-hot at the slot
        logits = self.head((x * here).sum(dim=1))  # (B, V)
        return logits, (weights * here).sum(dim=1), (fed, count + 1)
