"""T5 with transformers' T5ForConditionalGeneration names and semantics (eager attention); the
equations, the buckets, the masks and their pitfalls are in parity/specs/t5.py.

Classes and attributes are transformers' (`encoder.block.{i}.layer.0.SelfAttention.q`, ...), so its
state_dict() loads as it is, less two things that would hold one tensor under several names:
- the stacks own no `embed_tokens`: transformers' are `shared` itself; here the model looks the ids
  up in `shared` and hands the stacks their embeddings (transformers' `inputs_embeds` path);
- a tied head has no `lm_head` module: it is `F.linear(y, shared.weight)`, the same matmul.
T5LayerNorm is torch.nn.RMSNorm (bit for bit transformers' T5LayerNorm in float32, measured; in
float64 it stays float64 where transformers' computes the mean square in float32).
The additive mask argument is `additive_mask` (transformers' `mask`; Keras reserves that name).
"""
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_impl.activations import activation


def relative_position_bucket(relative_position, bidirectional, num_buckets, thresholds):  # (t, S) key - query
    """transformers' _relative_position_bucket by integer comparisons: the distance's count of the
    spec's thresholds, plus num_buckets / 2 for a key after the query when bidirectional (the
    decoder's causal buckets count only keys before it). -> (t, S) bucket ids"""
    if bidirectional:
        offset = (relative_position > 0).long() * (num_buckets // 2)
        distance = torch.abs(relative_position)
    else:
        offset = 0
        distance = -torch.clamp(relative_position, max=0)
    steps = torch.tensor(thresholds, dtype=distance.dtype, device=distance.device)  # (K,)
    return offset + (distance[..., None] >= steps).long().sum(-1)  # (t, S)


def padding_mask(attention_mask, dtype):  # (B, S) 1 = attend, or None
    """transformers' eager mask of padded keys, ADDED to the scores: 0 where attention_mask is 1,
    finfo(dtype).min where it is 0. -> (B, 1, 1, S) or None"""
    if attention_mask is None:
        return None
    mask = torch.where(attention_mask != 0, torch.zeros((), dtype=dtype, device=attention_mask.device),
                       torch.finfo(dtype).min)
    return mask[:, None, None, :]  # (B, 1, 1, S)


def causal_mask(length, attention_mask, dtype, device):  # T, (B, T) or None
    """The decoder's eager mask: 0 where query i may attend to key j (j <= i and not padding),
    finfo(dtype).min elsewhere. -> (B|1, 1, T, T)"""
    positions = torch.arange(length, device=device)
    allowed = (positions[None, :] <= positions[:, None])[None]  # (1, T, T)
    if attention_mask is not None:
        allowed = allowed & (attention_mask[:, None, :] != 0)  # (B, T, T)
    mask = torch.where(allowed, torch.zeros((), dtype=dtype, device=device), torch.finfo(dtype).min)
    return mask[:, None]  # (B|1, 1, T, T)


class T5LayerNorm(nn.RMSNorm):
    """w * x / sqrt(mean(x^2) + eps): no mean subtracted, no bias (transformers' T5LayerNorm)."""

    def __init__(self, spec, dtype):
        super().__init__(spec.d_model, eps=spec.layer_norm_epsilon, dtype=dtype)


def linear(in_features, out_features, dtype):
    """nn.Linear without a bias (every T5 Linear)."""
    return nn.Linear(in_features, out_features, bias=False, dtype=dtype)


class T5DenseActDense(nn.Module):
    """wo(dropout(act(wi x))): t5-small's ReLU feed-forward."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.wi = linear(spec.d_model, spec.d_ff, dtype)
        self.wo = linear(spec.d_ff, spec.d_model, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)
        self.act = activation(spec.activation)

    def forward(self, hidden_states):  # (B, t, C)
        return self.wo(self.dropout(self.act(self.wi(hidden_states))))  # (B, t, C)


class T5DenseGatedActDense(nn.Module):
    """wo(dropout(act(wi_0 x) * wi_1 x)): T5 v1.1's gated feed-forward (GELU's tanh approximation)."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.wi_0 = linear(spec.d_model, spec.d_ff, dtype)
        self.wi_1 = linear(spec.d_model, spec.d_ff, dtype)
        self.wo = linear(spec.d_ff, spec.d_model, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)
        self.act = activation(spec.activation)

    def forward(self, hidden_states):  # (B, t, C)
        hidden_states = self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states)  # (B, t, F)
        return self.wo(self.dropout(hidden_states))  # (B, t, C)


class T5LayerFF(nn.Module):
    """x + dropout(DenseReluDense(layer_norm(x)))."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.DenseReluDense = (T5DenseGatedActDense if spec.is_gated_act else T5DenseActDense)(spec, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, hidden_states):  # (B, t, C)
        return hidden_states + self.dropout(self.DenseReluDense(self.layer_norm(hidden_states)))


class T5Attention(nn.Module):
    """Multi-head attention without the D^-0.5 scale: q k^T + position bias + mask, softmax,
    dropout, times v, heads merged, o. Block 0's self-attention owns the relative position bias
    table and computes the bias the other blocks of its stack reuse."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__()
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
            self.relative_attention_bias = nn.Embedding(spec.relative_attention_num_buckets, spec.num_heads,
                                                        dtype=dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def compute_bias(self, query_length, key_length, device):
        """Row bucket(j - i) of the table for every (query i, key j). -> (1, H, t, S)"""
        context_position = torch.arange(query_length, device=device)[:, None]  # (t, 1)
        memory_position = torch.arange(key_length, device=device)[None, :]  # (1, S)
        buckets = relative_position_bucket(memory_position - context_position, self.bidirectional,
                                           self.num_buckets, self.thresholds)  # (t, S)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # (1, H, t, S)

    def split_heads(self, x, length):  # (B, n, H * D), n
        return x.view(-1, length, self.num_heads, self.key_value_proj_dim).transpose(1, 2)  # (B, H, n, D)

    def forward(self, hidden_states, additive_mask=None, key_value_states=None, position_bias=None):  # (B, t, C)
        """Self-attention, or cross-attention over key_value_states (B, S, C). position_bias
        (1, H, t, S) given by an earlier block, or computed here (block 0), or none (cross).
        -> (B, t, C), the position bias for the next block"""
        current_states = hidden_states if key_value_states is None else key_value_states
        query = self.split_heads(self.q(hidden_states), hidden_states.shape[1])  # (B, H, t, D)
        key = self.split_heads(self.k(current_states), current_states.shape[1])  # (B, H, S, D)
        value = self.split_heads(self.v(current_states), current_states.shape[1])
        scores = torch.matmul(query, key.transpose(2, 3))  # (B, H, t, S), unscaled
        if position_bias is None and self.has_relative_attention_bias:
            position_bias = self.compute_bias(query.shape[2], key.shape[2], scores.device)
        if position_bias is not None:
            scores = scores + position_bias
        if additive_mask is not None:
            scores = scores + additive_mask
        weights = self.dropout(F.softmax(scores, dim=-1))  # (B, H, t, S)
        context = torch.matmul(weights, value).transpose(1, 2)  # (B, t, H, D)
        return self.o(context.reshape(*context.shape[:2], -1)), position_bias  # (B, t, C)


class T5LayerSelfAttention(nn.Module):
    """x + dropout(SelfAttention(layer_norm(x)))."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__()
        self.SelfAttention = T5Attention(spec, has_relative_attention_bias, is_decoder, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, hidden_states, additive_mask=None, position_bias=None):  # (B, t, C)
        attention_output, position_bias = self.SelfAttention(self.layer_norm(hidden_states), additive_mask,
                                                             position_bias=position_bias)
        return hidden_states + self.dropout(attention_output), position_bias


class T5LayerCrossAttention(nn.Module):
    """y + dropout(EncDecAttention(layer_norm(y), keys and values from the encoder states))."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.EncDecAttention = T5Attention(spec, False, True, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, hidden_states, key_value_states, additive_mask=None):  # (B, t, C), (B, S, C)
        attention_output, _ = self.EncDecAttention(self.layer_norm(hidden_states), additive_mask,
                                                   key_value_states=key_value_states)
        return hidden_states + self.dropout(attention_output)  # (B, t, C)


class T5Block(nn.Module):
    """layer.0 self-attention, (decoder) layer.1 cross-attention, then the feed-forward."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__()
        self.is_decoder = is_decoder
        layers = [T5LayerSelfAttention(spec, has_relative_attention_bias, is_decoder, dtype)]
        if is_decoder:
            layers.append(T5LayerCrossAttention(spec, dtype))
        layers.append(T5LayerFF(spec, dtype))
        self.layer = nn.ModuleList(layers)

    def forward(self, hidden_states, additive_mask, position_bias, encoder_hidden_states=None, encoder_mask=None):
        hidden_states, position_bias = self.layer[0](hidden_states, additive_mask, position_bias)  # (B, t, C)
        if self.is_decoder:
            hidden_states = self.layer[1](hidden_states, encoder_hidden_states, encoder_mask)
        return self.layer[-1](hidden_states), position_bias  # (B, t, C)


class T5Stack(nn.Module):
    """The encoder (bidirectional) or the decoder (causal, with cross-attention): dropout on the
    embeddings, the blocks sharing block 0's position bias, final_layer_norm, dropout."""

    def __init__(self, spec, is_decoder, dtype):
        super().__init__()
        self.is_decoder = is_decoder
        layers = spec.decoder_layers if is_decoder else spec.num_layers
        self.block = nn.ModuleList(T5Block(spec, i == 0, is_decoder, dtype) for i in range(layers))
        self.final_layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, inputs_embeds, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None):
        """inputs_embeds (B, t, C); attention_mask (B, t) of these positions; the decoder's
        encoder_hidden_states (B, S, C) and their encoder_attention_mask (B, S). -> (B, t, C)"""
        dtype = inputs_embeds.dtype
        if self.is_decoder:
            mask = causal_mask(inputs_embeds.shape[1], attention_mask, dtype, inputs_embeds.device)  # (B|1, 1, t, t)
        else:
            mask = padding_mask(attention_mask, dtype)  # (B, 1, 1, t) or None
        encoder_mask = padding_mask(encoder_attention_mask, dtype)  # (B, 1, 1, S) or None
        hidden_states = self.dropout(inputs_embeds)
        position_bias = None
        for block in self.block:
            hidden_states, position_bias = block(hidden_states, mask, position_bias, encoder_hidden_states,
                                                 encoder_mask)
        return self.dropout(self.final_layer_norm(hidden_states))  # (B, t, C)


class T5ForConditionalGeneration(nn.Module):
    """shared embedding, encoder, decoder, and the head: tied (y * d_model^-0.5) shared^T, or lm_head."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.shared = nn.Embedding(spec.vocab_size, spec.d_model, dtype=dtype)
        self.encoder = T5Stack(spec, False, dtype)
        self.decoder = T5Stack(spec, True, dtype)
        if not spec.tie_word_embeddings:
            self.lm_head = linear(spec.d_model, spec.vocab_size, dtype)
        self.output_scale = spec.d_model ** -0.5 if spec.scales_decoder_outputs else None

    def forward(self, input_ids, attention_mask=None, *, decoder_input_ids, decoder_attention_mask=None):
        """input_ids (B, S), decoder_input_ids (B, T), masks 1 = attend. -> {"logits": (B, T, V)}"""
        encoder_hidden_states = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, C)
        sequence_output = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask,
                                       encoder_hidden_states, attention_mask)  # (B, T, C)
        if self.output_scale is not None:
            sequence_output = sequence_output * self.output_scale
        if self.spec.tie_word_embeddings:
            return {"logits": F.linear(sequence_output, self.shared.weight)}  # (B, T, V)
        return {"logits": self.lm_head(sequence_output)}  # (B, T, V)
