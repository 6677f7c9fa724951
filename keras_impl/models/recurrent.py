"""Recurrent layers with torch.nn.RNN / LSTM / GRU semantics (batch-first), on keras.layers.RNN.

Each layer and direction is a cell, the model attribute `l0`, `l0_reverse`, `l1`, ..., owning
`weight_ih` (in, G*H), `weight_hh` (H, G*H), `bias_ih` and `bias_hh` (G*H,): torch.nn's tensors,
the weights transposed, gates kept in torch's order (LSTM i, f, g, o; GRU r, z, n).
keras.layers.RNN drives each cell over time; per-example lengths become its mask. A masked step
keeps the state and outputs zeros, so with right padding the backward pass (go_backwards) first
carries the initial state through the padding, then runs t = length-1 .. 0, and flipping its
output back puts every step at its own position.
"""
import keras
from keras import ops


class _Cell(keras.layers.Layer):
    """One layer, one direction: the step (x_t, states) -> (h_t, new states) of keras.layers.RNN."""
    num_gates = 1

    def __init__(self, in_features, spec, dtype, name):
        # An explicit name (the attribute's, "l0_reverse"): the default comes from the private class
        # ("_lstm_cell"), and TensorFlow rejects a variable scope starting with "_" (tf.function, SavedModel).
        super().__init__(dtype=dtype, name=name)
        self.hidden_size = spec.hidden_size
        self.use_bias = spec.bias
        gated = self.num_gates * spec.hidden_size
        # torch.nn's default: every tensor uniform in +-1/sqrt(hidden).
        init = keras.initializers.RandomUniform(-spec.hidden_size ** -0.5, spec.hidden_size ** -0.5)
        # Created here, not in build(): the shapes come from the spec, not from the input.
        self.weight_ih = self.add_weight(shape=(in_features, gated), initializer=init, dtype=dtype, name="weight_ih")
        self.weight_hh = self.add_weight(shape=(spec.hidden_size, gated), initializer=init, dtype=dtype,
                                         name="weight_hh")
        if spec.bias:
            self.bias_ih = self.add_weight(shape=(gated,), initializer=init, dtype=dtype, name="bias_ih")
            self.bias_hh = self.add_weight(shape=(gated,), initializer=init, dtype=dtype, name="bias_hh")
        self.built = True

    @property
    def state_size(self):
        return self.hidden_size

    @property
    def output_size(self):
        return self.hidden_size

    def projections(self, x, h):  # (B, in), (B, H)
        """x W_ih^T + b_ih and h W_hh^T + b_hh, each (B, G*H)."""
        gi, gh = ops.matmul(x, self.weight_ih), ops.matmul(h, self.weight_hh)  # (B, G*H) each
        if self.use_bias:
            gi, gh = gi + self.bias_ih, gh + self.bias_hh
        return gi, gh


class _RNNCell(_Cell):
    def __init__(self, in_features, spec, dtype, name):
        super().__init__(in_features, spec, dtype, name)
        self.nonlinearity = ops.tanh if spec.nonlinearity == "tanh" else ops.relu

    def call(self, x, states):  # (B, in), [(B, H)]
        gi, gh = self.projections(x, states[0])
        h = self.nonlinearity(gi + gh)  # (B, H)
        return h, [h]


class _LSTMCell(_Cell):
    num_gates = 4

    @property
    def state_size(self):
        return [self.hidden_size, self.hidden_size]  # (h, c): torch's order

    def call(self, x, states):  # (B, in), [(B, H), (B, H)]
        h, c = states
        gi, gh = self.projections(x, h)
        i, f, g, o = ops.split(gi + gh, 4, axis=-1)  # (B, H) each
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]


class _GRUCell(_Cell):
    num_gates = 3

    def call(self, x, states):  # (B, in), [(B, H)]
        h = states[0]
        gi, gh = self.projections(x, h)
        i_r, i_z, i_n = ops.split(gi, 3, axis=-1)  # (B, H) each
        h_r, h_z, h_n = ops.split(gh, 3, axis=-1)  # (B, H) each
        r, z = ops.sigmoid(i_r + h_r), ops.sigmoid(i_z + h_z)
        n = ops.tanh(i_n + r * h_n)  # r gates W_hn h + b_hn, bias included (torch's, Keras' reset_after)
        h = (1 - z) * n + z * h
        return h, [h]


class Recurrent(keras.Model):
    """torch.nn.RNN / LSTM / GRU: (sequence, lengths, h_0, c_0) -> {"output", "h_n"(, "c_n")}."""
    cell_class = None

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.is_lstm = self.cell_class is _LSTMCell
        for layer in range(spec.num_layers):
            in_features = spec.input_size if layer == 0 else spec.hidden_size * spec.directions
            for direction, suffix in enumerate(("", "_reverse")[:spec.directions]):
                cell = self.cell_class(in_features, spec, dtype, name=f"l{layer}{suffix}")
                setattr(self, f"l{layer}{suffix}", cell)
                # Private: the adapters see only the cell, which owns the variables (the loop owns none).
                # zero_output_for_mask: zeros at padded steps (torch's); the default repeats the last output.
                setattr(self, f"_l{layer}{suffix}_loop", keras.layers.RNN(
                    cell, return_sequences=True, return_state=True, go_backwards=direction == 1,
                    zero_output_for_mask=True, dtype=dtype))
        self.drop = keras.layers.Dropout(spec.dropout, dtype=dtype)

    def call(self, sequence, lengths=None, h_0=None, c_0=None, training=False):  # (B, T, input_size)
        spec = self.spec
        batch, steps = ops.shape(sequence)[0], ops.shape(sequence)[1]
        # Right padding: step t of example b is valid while t < lengths[b].
        mask = None if lengths is None else (
            ops.arange(steps)[None, :] < ops.cast(lengths, "int32")[:, None])  # (B, T)
        zeros = ops.zeros((spec.num_layers * spec.directions, batch, spec.hidden_size), self.compute_dtype)
        h_0 = zeros if h_0 is None else h_0  # (L*D, B, H)
        c_0 = zeros if c_0 is None else c_0  # (L*D, B, H)
        x, h_n, c_n = sequence, [], []
        for layer in range(spec.num_layers):
            outputs = []
            for direction, suffix in enumerate(("", "_reverse")[:spec.directions]):
                index = layer * spec.directions + direction
                initial = [h_0[index], c_0[index]] if self.is_lstm else [h_0[index]]  # (B, H) each
                output, *states = getattr(self, f"_l{layer}{suffix}_loop")(
                    x, initial_state=initial, mask=mask, training=training)  # (B, T, H), [(B, H)]
                if direction == 1:
                    output = ops.flip(output, axis=1)  # go_backwards returns the steps last-first
                outputs.append(output)
                h_n.append(states[0])
                c_n.extend(states[1:])
            x = ops.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]  # (B, T, D*H)
            if layer < spec.num_layers - 1:
                x = self.drop(x, training=training)
        # A copy without the mask Keras attached to the RNN's output (`_keras_mask`): Keras losses
        # would skip the padded steps, which torch's loss counts as zeros.
        result = {"output": ops.copy(x), "h_n": ops.stack(h_n)}  # (B, T, D*H), (L*D, B, H)
        if self.is_lstm:
            result["c_n"] = ops.stack(c_n)  # (L*D, B, H)
        return result

    def step(self, x, h_0, c_0=None, training=False):  # (B, input_size), (L, B, H) each
        """One time step of a unidirectional stack from the states (h_0, c_0), a seq2seq decoder's
        step: each layer's cell called once. -> output (B, H), h_n (and c_n) (L, B, H)."""
        spec = self.spec
        h_n, c_n = [], []
        for layer in range(spec.num_layers):
            states = [h_0[layer], c_0[layer]] if self.is_lstm else [h_0[layer]]  # (B, H) each
            x, states = getattr(self, f"l{layer}")(x, states)  # (B, H), [(B, H)]
            h_n.append(states[0])
            c_n.extend(states[1:])
            if layer < spec.num_layers - 1:
                x = self.drop(x, training=training)
        result = {"output": x, "h_n": ops.stack(h_n)}  # (B, H), (L, B, H)
        if self.is_lstm:
            result["c_n"] = ops.stack(c_n)  # (L, B, H)
        return result


class RNN(Recurrent):
    cell_class = _RNNCell


class LSTM(Recurrent):
    cell_class = _LSTMCell


class GRU(Recurrent):
    cell_class = _GRUCell


class CharLM(keras.Model):
    """char-rnn: embedding -> LSTM stack -> Dense over the vocabulary, at every step."""

    def __init__(self, spec, dtype):
        super().__init__(dtype=dtype)
        self.spec = spec
        self.embedding = keras.layers.Embedding(spec.vocab_size, spec.embedding_dim, dtype=dtype)
        self.rnn = LSTM(spec.recurrent, dtype)
        self.head = keras.layers.Dense(spec.vocab_size, dtype=dtype)

    def call(self, tokens, h_0=None, c_0=None, training=False):  # (B, T) int64
        x = self.embedding(tokens)  # (B, T, embedding_dim)
        outputs = self.rnn(x, h_0=h_0, c_0=c_0, training=training)  # output (B, T, H); h_n, c_n (L, B, H)
        return {"logits": self.head(outputs["output"]), "h_n": outputs["h_n"], "c_n": outputs["c_n"]}  # (B, T, V)
