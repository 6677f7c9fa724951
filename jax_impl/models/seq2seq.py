"""Encoder-decoder translation models with attention: Bahdanau (additive attention, bidirectional
GRU encoder) and Luong (global "general"/"dot" attention with input feeding, LSTM stacks).

The equations are in parity/specs/seq2seq.py. Both models expose the two halves a decoding loop
needs, on native arrays:

    encode(tokens (B, S), lengths (B,) or None) -> memory (B, S, D*H), mask (B, S) bool, state
    decode_step(previous_ids (B,), state, memory, mask) -> logits (B, V), attention (B, S), state

`state` is a tuple of arrays, each with the batch axis first: Bahdanau (s (B, H), keys U_a h_j
(B, S, A), computed once per source), Luong (h (B, L, H), c (B, L, H), htilde (B, H)). `__call__`
runs decode_step over the target steps: teacher-forced on `decoder_tokens`, else greedy from BOS.
The encoders are the recurrent models of recurrent.py; the decoders step them one position at a
time (`Recurrent.step`: each layer's cell called once). A Python loop over the steps: jax.jit
unrolls it (the number of steps is static).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.models.recurrent import GRU, LSTM


def masked_softmax(scores, mask):  # (B, S), (B, S) bool
    """softmax over the valid source positions. -inf at a padded one makes its weight exactly 0
    (exp(-inf) = 0), in the forward and the backward pass; a row with no valid position would be
    NaN, a loud failure, where a large finite fill would silently give a uniform row (parity's
    input checks keep every length >= 1)."""
    return jax.nn.softmax(jnp.where(mask, scores, -jnp.inf), axis=-1)  # (B, S)


class BahdanauAttention(nnx.Module):
    """Additive attention: e_j = v^T tanh(W_a s + U_a h_j); the keys U_a h_j come precomputed."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.query = nnx.Linear(spec.hidden_size, spec.attention_size, use_bias=False, dtype=dtype,
                                param_dtype=dtype, rngs=rngs)  # W_a
        self.key = nnx.Linear(spec.memory_size, spec.attention_size, use_bias=False, dtype=dtype,
                              param_dtype=dtype, rngs=rngs)  # U_a
        self.energy = nnx.Linear(spec.attention_size, 1, use_bias=False, dtype=dtype, param_dtype=dtype,
                                 rngs=rngs)  # v

    def __call__(self, query, keys, memory, mask):  # (B, H), (B, S, A), (B, S, 2H), (B, S)
        scores = self.energy(jnp.tanh(self.query(query)[:, None] + keys))[..., 0]  # (B, S)
        weights = masked_softmax(scores, mask)  # (B, S)
        context = jnp.matmul(weights[:, None], memory)[:, 0]  # (B, 2H)
        return context, weights


class LuongAttention(nnx.Module):
    """Global attention: e_j = (W_a s)^T h_j ("general") or s^T h_j ("dot"), then the attentional
    state htilde = tanh(W_c [c; s])."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.score = nnx.Linear(spec.hidden_size, spec.hidden_size, use_bias=False, dtype=dtype, param_dtype=dtype,
                                rngs=rngs) if spec.score == "general" else None
        self.combine = nnx.Linear(2 * spec.hidden_size, spec.hidden_size, use_bias=False, dtype=dtype,
                                  param_dtype=dtype, rngs=rngs)  # W_c

    def __call__(self, query, memory, mask):  # (B, H), (B, S, H), (B, S)
        projected = query if self.score is None else self.score(query)  # (B, H)
        scores = jnp.matmul(memory, projected[:, :, None])[..., 0]  # (B, S)
        weights = masked_softmax(scores, mask)  # (B, S)
        context = jnp.matmul(weights[:, None], memory)[:, 0]  # (B, H)
        return jnp.tanh(self.combine(jnp.concatenate([context, query], axis=-1))), weights  # (B, H), (B, S)


class Seq2Seq(nnx.Module):
    """The decoding loop both models share: encode once, then one decode_step per target step."""

    def __call__(self, tokens, lengths=None, decoder_tokens=None):  # (B, S) int, (B,), (B, T) int
        memory, mask, state = self.encode(tokens, lengths)  # (B, S, D*H), (B, S), tuple
        steps = self.spec.target_len if decoder_tokens is None else decoder_tokens.shape[1]
        previous = jnp.full(tokens.shape[:1], self.spec.BOS, dtype=jnp.int32)  # (B,)
        logits, attention = [], []
        for t in range(steps):
            if decoder_tokens is not None:  # teacher forcing: the given input of step t
                previous = decoder_tokens[:, t]  # (B,)
            step_logits, weights, state = self.decode_step(previous, state, memory, mask)  # (B, V), (B, S)
            logits.append(step_logits)
            attention.append(weights)
            previous = jnp.argmax(step_logits, axis=-1)  # greedy: this step's best id is the next input
        return {"logits": jnp.stack(logits, axis=1),  # (B, T, V)
                "attention": jnp.stack(attention, axis=1)}  # (B, T, S)

    def source_mask(self, tokens, lengths):  # (B, S), (B,) or None
        """True at the valid source positions j < lengths[b]. -> (B, S) bool"""
        if lengths is None:
            return jnp.ones(tokens.shape, dtype=bool)
        return jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]


class Bahdanau(Seq2Seq):
    """RNNsearch: bidirectional GRU encoder, additive attention on s_{t-1}, 1-layer GRU decoder."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.encoder_embedding = nnx.Embed(spec.source_vocab_size, spec.embedding_dim, dtype=dtype, param_dtype=dtype,
                                           rngs=rngs)
        self.encoder = GRU(spec.encoder_spec, dtype, rngs=rngs)
        self.bridge = nnx.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)  # W_s
        self.decoder_embedding = nnx.Embed(spec.target_vocab_size, spec.embedding_dim, dtype=dtype, param_dtype=dtype,
                                           rngs=rngs)
        self.attention = BahdanauAttention(spec, dtype, rngs=rngs)
        self.decoder = GRU(spec.decoder_spec, dtype, rngs=rngs)
        self.head = nnx.Linear(spec.hidden_size + spec.memory_size, spec.target_vocab_size, dtype=dtype,
                               param_dtype=dtype, rngs=rngs)

    def encode(self, tokens, lengths=None):  # (B, S) int, (B,)
        """-> memory (B, S, 2H), mask (B, S), state (s_0 (B, H), keys (B, S, A))."""
        outputs = self.encoder(self.encoder_embedding(tokens), lengths=lengths)  # output (B, S, 2H); h_n (2L, B, H)
        memory = outputs["output"]  # (B, S, 2H), zeros at padded positions
        s = jnp.tanh(self.bridge(outputs["h_n"][-1]))  # (B, H): the last layer's backward state at j = 1
        return memory, self.source_mask(tokens, lengths), (s, self.attention.key(memory))  # keys (B, S, A)

    def decode_step(self, previous_ids, state, memory, mask):  # (B,) int, (s, keys), (B, S, 2H), (B, S)
        s, keys = state  # (B, H), (B, S, A)
        context, weights = self.attention(s, keys, memory, mask)  # (B, 2H), (B, S): attends from s_{t-1}
        x = jnp.concatenate([self.decoder_embedding(previous_ids), context], axis=-1)  # (B, E + 2H)
        s = self.decoder.step(x, s[None])["h_n"][0]  # (B, H)
        logits = self.head(jnp.concatenate([s, context], axis=-1))  # (B, V)
        return logits, weights, (s, keys)


class Luong(Seq2Seq):
    """LSTM encoder and decoder stacks, global attention on s_t, input feeding."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.encoder_embedding = nnx.Embed(spec.source_vocab_size, spec.embedding_dim, dtype=dtype, param_dtype=dtype,
                                           rngs=rngs)
        self.encoder = LSTM(spec.encoder_spec, dtype, rngs=rngs)
        self.decoder_embedding = nnx.Embed(spec.target_vocab_size, spec.embedding_dim, dtype=dtype, param_dtype=dtype,
                                           rngs=rngs)
        self.decoder = LSTM(spec.decoder_spec, dtype, rngs=rngs)
        self.attention = LuongAttention(spec, dtype, rngs=rngs)
        self.head = nnx.Linear(spec.hidden_size, spec.target_vocab_size, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def encode(self, tokens, lengths=None):  # (B, S) int, (B,)
        """-> memory (B, S, H), mask (B, S), state (h (B, L, H), c (B, L, H), htilde_0 = 0 (B, H))."""
        outputs = self.encoder(self.encoder_embedding(tokens), lengths=lengths)  # output (B, S, H); h_n, c_n (L, B, H)
        memory = outputs["output"]  # (B, S, H), zeros at padded positions
        htilde = jnp.zeros((memory.shape[0], self.spec.hidden_size), dtype=memory.dtype)
        state = (jnp.swapaxes(outputs["h_n"], 0, 1), jnp.swapaxes(outputs["c_n"], 0, 1), htilde)  # batch first
        return memory, self.source_mask(tokens, lengths), state

    def decode_step(self, previous_ids, state, memory, mask):  # (B,) int, (h, c, htilde), (B, S, H), (B, S)
        h, c, htilde = state  # (B, L, H), (B, L, H), (B, H)
        x = jnp.concatenate([self.decoder_embedding(previous_ids), htilde], axis=-1)  # (B, E + H): input feeding
        outputs = self.decoder.step(x, jnp.swapaxes(h, 0, 1), jnp.swapaxes(c, 0, 1))  # s_t (B, H)
        htilde, weights = self.attention(outputs["output"], memory, mask)  # (B, H), (B, S): attends from s_t
        logits = self.head(htilde)  # (B, V)
        return logits, weights, (jnp.swapaxes(outputs["h_n"], 0, 1), jnp.swapaxes(outputs["c_n"], 0, 1), htilde)
