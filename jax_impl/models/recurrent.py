"""Recurrent layers with torch.nn.RNN / LSTM / GRU semantics (batch-first), on nnx.RNN.

Each layer and direction is a cell, the model attribute `l0`, `l0_reverse`, `l1`, ..., owning
`weight_ih` (in, G*H), `weight_hh` (H, G*H), `bias_ih` and `bias_hh` (G*H,): torch.nn's tensors,
the weights transposed, gates kept in torch's order (LSTM i, f, g, o; GRU r, z, n).
nnx.RNN drives each cell over time with per-example `seq_lengths`: the final carry is the one
after step length-1, and the backward direction (reverse, keep_order) flips each example within
its own length, runs t = length-1 .. 0 first and puts every output back at its own step. nnx.RNN
still computes the padded steps, so their outputs are set to zero here (torch's padding value).
"""

import jax
import jax.numpy as jnp
from flax import nnx


class _Cell(nnx.RNNCellBase):
    """One layer, one direction: the step (carry, x_t) -> (new carry, h_t) of nnx.RNN."""
    num_gates = 1

    def __init__(self, in_features, spec, dtype, *, rngs: nnx.Rngs):
        self.hidden_size = spec.hidden_size
        self.dtype = dtype
        self.use_bias = spec.bias
        gated = self.num_gates * spec.hidden_size
        bound = spec.hidden_size ** -0.5  # torch.nn's default: every tensor uniform in +-1/sqrt(hidden)

        def uniform(*shape):
            return nnx.Param(jax.random.uniform(rngs.params(), shape, dtype, -bound, bound))

        self.weight_ih = uniform(in_features, gated)
        self.weight_hh = uniform(spec.hidden_size, gated)
        if spec.bias:
            self.bias_ih = uniform(gated)
            self.bias_hh = uniform(gated)

    @property
    def num_feature_axes(self) -> int:
        return 1

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):  # (B, in)
        """Zeros; nnx.RNN asks for it only when no initial carry is given (never, in `Recurrent`)."""
        return jnp.zeros((*input_shape[:-1], self.hidden_size), self.dtype)  # (B, H)

    def __call__(self, carry, x):  # carry: (B, H) (LSTM: a pair), (B, in)
        # The step is each cell's private `_step`: nnx.capture (the adapter's trace) sows the
        # output of a class's own __call__ and public methods (not inherited ones), and a sow
        # inside nnx.RNN's scan changes the carried cell's structure, which scan rejects.
        return self._step(carry, x)

    def projections(self, x, h):  # (B, in), (B, H)
        """x W_ih^T + b_ih and h W_hh^T + b_hh, each (B, G*H)."""
        gi, gh = x @ self.weight_ih[...], h @ self.weight_hh[...]  # (B, G*H) each
        if self.use_bias:
            gi, gh = gi + self.bias_ih[...], gh + self.bias_hh[...]
        return gi, gh


class _RNNCell(_Cell):
    def __init__(self, in_features, spec, dtype, *, rngs: nnx.Rngs):
        super().__init__(in_features, spec, dtype, rngs=rngs)
        self.nonlinearity = jnp.tanh if spec.nonlinearity == "tanh" else jax.nn.relu

    def _step(self, h, x):  # (B, H), (B, in)
        gi, gh = self.projections(x, h)
        h = self.nonlinearity(gi + gh)  # (B, H)
        return h, h


class _LSTMCell(_Cell):
    num_gates = 4

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):  # (B, in)
        h = super().initialize_carry(input_shape)  # (B, H)
        return h, h  # (h, c): torch's order (Flax's own cells carry (c, h))

    def _step(self, carry, x):  # ((B, H), (B, H)), (B, in)
        h, c = carry
        gi, gh = self.projections(x, h)
        i, f, g, o = jnp.split(gi + gh, 4, axis=-1)  # (B, H) each
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h


class _GRUCell(_Cell):
    num_gates = 3

    def _step(self, h, x):  # (B, H), (B, in)
        gi, gh = self.projections(x, h)
        i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)  # (B, H) each
        h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)  # (B, H) each
        r, z = jax.nn.sigmoid(i_r + h_r), jax.nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + r * h_n)  # r gates W_hn h + b_hn, bias included (torch's; nnx.GRUCell has no b_hn)
        h = (1 - z) * n + z * h
        return h, h


class Recurrent(nnx.Module):
    """torch.nn.RNN / LSTM / GRU: (sequence, lengths, h_0, c_0) -> {"output", "h_n"(, "c_n")}."""
    cell_class = None

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.dtype = dtype
        self.is_lstm = self.cell_class is _LSTMCell
        for layer in range(spec.num_layers):
            in_features = spec.input_size if layer == 0 else spec.hidden_size * spec.directions
            for suffix in ("", "_reverse")[:spec.directions]:
                setattr(self, f"l{layer}{suffix}", self.cell_class(in_features, spec, dtype, rngs=rngs))
        self.drop = nnx.Dropout(spec.dropout, rngs=rngs)

    def __call__(self, sequence, lengths=None, h_0=None, c_0=None):  # (B, T, input_size)
        spec = self.spec
        batch, steps = sequence.shape[:2]
        # Right padding: step t of example b is valid while t < lengths[b].
        mask = None if lengths is None else jnp.arange(steps)[None, :] < lengths[:, None]  # (B, T)
        zeros = jnp.zeros((spec.num_layers * spec.directions, batch, spec.hidden_size), self.dtype)
        h_0 = zeros if h_0 is None else h_0  # (L*D, B, H)
        c_0 = zeros if c_0 is None else c_0  # (L*D, B, H)
        if mask is not None:
            # nnx.RNN computes the padded steps too, and discards them: a NaN or inf read there would
            # still reach the weight gradients (0 * NaN in x^T dy). torch never reads padding.
            sequence = jnp.where(mask[..., None], sequence, 0)  # (B, T, input_size)
        x, h_n, c_n = sequence, [], []
        for layer in range(spec.num_layers):
            outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:spec.directions]):
                index = layer * spec.directions + direction
                initial = (h_0[index], c_0[index]) if self.is_lstm else h_0[index]  # (B, H) each
                # Built per call, not kept: as an attribute it would put the cell's variables under
                # a second path ("rnn.cell.weight_ih"). rngs=False: no carry-init stream (unused).
                loop = nnx.RNN(getattr(self, f"l{layer}{suffix}"), return_carry=True, reverse=direction == 1,
                               keep_order=True, rngs=False)
                carry, output = loop(x, initial_carry=initial, seq_lengths=lengths)  # carry (B, H) each; (B, T, H)
                if mask is not None:
                    output = jnp.where(mask[..., None], output, 0)  # padded steps were computed: zero them
                outputs.append(output)
                h_n.append(carry[0] if self.is_lstm else carry)
                c_n.extend(carry[1:] if self.is_lstm else ())
            x = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]  # (B, T, D*H)
            if layer < spec.num_layers - 1:
                x = self.drop(x)
        result = {"output": x, "h_n": jnp.stack(h_n)}  # (B, T, D*H), (L*D, B, H)
        if self.is_lstm:
            result["c_n"] = jnp.stack(c_n)  # (L*D, B, H)
        return result

    def step(self, x, h_0, c_0=None):  # (B, input_size), (L, B, H) each
        """One time step of a unidirectional stack from the states (h_0, c_0), a seq2seq decoder's
        step: each layer's cell called once. -> output (B, H), h_n (and c_n) (L, B, H)."""
        spec = self.spec
        h_n, c_n = [], []
        for layer in range(spec.num_layers):
            carry = (h_0[layer], c_0[layer]) if self.is_lstm else h_0[layer]  # (B, H) each
            carry, x = getattr(self, f"l{layer}")(carry, x)  # carry (B, H) each; (B, H)
            h_n.append(carry[0] if self.is_lstm else carry)
            c_n.extend(carry[1:] if self.is_lstm else ())
            if layer < spec.num_layers - 1:
                x = self.drop(x)
        result = {"output": x, "h_n": jnp.stack(h_n)}  # (B, H), (L, B, H)
        if self.is_lstm:
            result["c_n"] = jnp.stack(c_n)  # (L, B, H)
        return result


class RNN(Recurrent):
    cell_class = _RNNCell


class LSTM(Recurrent):
    cell_class = _LSTMCell


class GRU(Recurrent):
    cell_class = _GRUCell


class CharLM(nnx.Module):
    """char-rnn: embedding -> LSTM stack -> Linear over the vocabulary, at every step."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.embedding = nnx.Embed(spec.vocab_size, spec.embedding_dim, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.rnn = LSTM(spec.recurrent, dtype, rngs=rngs)
        self.head = nnx.Linear(spec.hidden_size, spec.vocab_size, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, tokens, h_0=None, c_0=None):  # (B, T) int64
        x = self.embedding(tokens)  # (B, T, embedding_dim)
        outputs = self.rnn(x, h_0=h_0, c_0=c_0)  # output (B, T, H); h_n, c_n (L, B, H)
        return {"logits": self.head(outputs["output"]), "h_n": outputs["h_n"], "c_n": outputs["c_n"]}  # (B, T, V)
