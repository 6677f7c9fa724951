"""Recurrent layers: torch.nn.RNN / LSTM / GRU themselves, with per-example lengths.

torch.nn runs its cells inside fused kernels (cuDNN on a GPU), so this file has no cell classes:
each model *is* the torch.nn module, and its state dict is the canonical state. `Recurrent`
adds what the Keras and Flax models' calls take: lengths (through pack_padded_sequence), named
initial states, and the outputs by name.
"""
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Recurrent:
    """Mixed in before torch.nn.RNN / LSTM / GRU: (sequence, lengths, h_0, c_0) -> named outputs."""

    def __init__(self, spec, dtype):
        options = {"nonlinearity": spec.nonlinearity} if spec.architecture == "rnn" else {}
        super().__init__(spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias, batch_first=True,
                         dropout=spec.dropout, bidirectional=spec.bidirectional, dtype=dtype, **options)
        self.spec = spec

    def forward(self, sequence, lengths=None, h_0=None, c_0=None):  # (B, T, input_size)
        steps = sequence.shape[1]
        if lengths is not None:
            # Packed, padded steps are never computed; enforce_sorted=False keeps the batch order.
            sequence = pack_padded_sequence(sequence, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if self.spec.architecture == "lstm":
            if h_0 is not None or c_0 is not None:  # torch.nn takes both or neither
                h_0 = h_0 if h_0 is not None else torch.zeros_like(c_0)
                c_0 = c_0 if c_0 is not None else torch.zeros_like(h_0)
                output, (h_n, c_n) = super().forward(sequence, (h_0, c_0))
            else:
                output, (h_n, c_n) = super().forward(sequence)
            states = {"h_n": h_n, "c_n": c_n}  # (L * D, B, H) each
        else:
            output, h_n = super().forward(sequence, h_0)
            states = {"h_n": h_n}  # (L * D, B, H)
        if lengths is not None:
            output, _ = pad_packed_sequence(output, batch_first=True, total_length=steps)  # zeros at padding
        return {"output": output, **states}  # output: (B, T, D * H)

    def step(self, x, h_0, c_0=None):  # (B, input_size), (L, B, H) each
        """One time step of a unidirectional stack from the states (h_0, c_0), a seq2seq decoder's
        step: a length-1 sequence through the fused module. -> output (B, H), h_n (and c_n) (L, B, H)."""
        outputs = self(x[:, None], h_0=h_0, c_0=c_0)  # output (B, 1, H)
        return {**outputs, "output": outputs["output"][:, 0]}  # (B, H)


class RNN(Recurrent, nn.RNN):
    pass


class LSTM(Recurrent, nn.LSTM):
    pass


class GRU(Recurrent, nn.GRU):
    pass


class CharLM(nn.Module):
    """char-rnn: embedding -> LSTM stack -> Linear over the vocabulary, at every step."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, dtype=dtype)
        self.rnn = LSTM(spec.recurrent, dtype)
        self.head = nn.Linear(spec.hidden_size, spec.vocab_size, dtype=dtype)

    def forward(self, tokens, h_0=None, c_0=None):  # (B, T) int64
        x = self.embedding(tokens)  # (B, T, embedding_dim)
        outputs = self.rnn(x, h_0=h_0, c_0=c_0)  # output (B, T, H); h_n, c_n (L, B, H)
        return {"logits": self.head(outputs["output"]), "h_n": outputs["h_n"], "c_n": outputs["c_n"]}  # (B, T, V)
