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

The KV cache (`init_cache`, `decode`) keeps static shapes, as GPT-2's: init_cache runs the encoder
once and holds, per decoder block, zeroed self-attention key and value buffers (B, H, max_len, D),
written in place at the step's positions with index_copy_, and the cross-attention keys and values
(B, H, S, D) of the encoder output; plus the encoder's additive padding mask. A step attends to all
max_len slots, the ones after a query's position masked, with the causal position bias of its
query positions against every slot.
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


def causal_mask(length, attention_mask, dtype, device, position=None, key_length=None):  # T, (B, T) or None
    """The decoder's eager mask: 0 where query i may attend to key j (j <= i and not padding),
    finfo(dtype).min elsewhere. A cached step's queries are at position .. position + T - 1 and its
    keys are key_length cache slots. -> (B|1, 1, T, T | key_length)"""
    positions = torch.arange(length, device=device)
    keys = positions if key_length is None else torch.arange(key_length, device=device)  # (S,)
    if position is not None:
        positions = positions + position
    allowed = (keys[None, :] <= positions[:, None])[None]  # (1, T, S)
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

    def compute_bias(self, query_length, key_length, device, position=None):
        """Row bucket(j - i) of the table for every (query i, key j), the queries at position ..
        position + t - 1 in a cached step. -> (1, H, t, S)"""
        context_position = torch.arange(query_length, device=device)[:, None]  # (t, 1)
        if position is not None:
            context_position = context_position + position
        memory_position = torch.arange(key_length, device=device)[None, :]  # (1, S)
        buckets = relative_position_bucket(memory_position - context_position, self.bidirectional,
                                           self.num_buckets, self.thresholds)  # (t, S)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]  # (1, H, t, S)

    def split_heads(self, x, length):  # (B, n, H * D), n
        return x.view(-1, length, self.num_heads, self.key_value_proj_dim).transpose(1, 2)  # (B, H, n, D)

    def key_value(self, current_states):  # (B, S, C)
        """The keys and values of current_states. -> 2 x (B, H, S, D)"""
        key = self.split_heads(self.k(current_states), current_states.shape[1])  # (B, H, S, D)
        return key, self.split_heads(self.v(current_states), current_states.shape[1])

    def forward(self, hidden_states, additive_mask=None, key_value_states=None, position_bias=None, layer_cache=None,
                position=None):  # (B, t, C)
        """Self-attention, or cross-attention over key_value_states (B, S, C). position_bias
        (1, H, t, S) given by an earlier block, or computed here (block 0), or none (cross).
        With a cache, self-attention (`position` given: the queries' first position) writes its keys
        and values into layer_cache's (key, value) buffers (B, H, max_len, D) at position ..
        position + t - 1 (in place) and attends to all max_len slots (S = max_len); cross-attention
        (`position` None) attends to layer_cache's keys and values as they are (the encoder's).
        -> (B, t, C), the position bias for the next block, the updated (key, value) or None"""
        query = self.split_heads(self.q(hidden_states), hidden_states.shape[1])  # (B, H, t, D)
        if layer_cache is not None and position is None:
            key, value = layer_cache  # (B, H, S, D): cross-attention's, computed once by init_cache
        else:
            key, value = self.key_value(hidden_states if key_value_states is None else key_value_states)
            if layer_cache is not None:
                slots = torch.arange(hidden_states.shape[1], device=key.device) + position  # (t,)
                key = layer_cache[0].index_copy_(2, slots, key)  # (B, H, max_len, D), in place
                value = layer_cache[1].index_copy_(2, slots, value)
                layer_cache = (key, value)
        scores = torch.matmul(query, key.transpose(2, 3))  # (B, H, t, S), unscaled
        if position_bias is None and self.has_relative_attention_bias:
            position_bias = self.compute_bias(query.shape[2], key.shape[2], scores.device, position)
        if position_bias is not None:
            scores = scores + position_bias
        if additive_mask is not None:
            scores = scores + additive_mask
        weights = self.dropout(F.softmax(scores, dim=-1))  # (B, H, t, S)
        context = torch.matmul(weights, value).transpose(1, 2)  # (B, t, H, D)
        return self.o(context.reshape(*context.shape[:2], -1)), position_bias, layer_cache  # (B, t, C)


class T5LayerSelfAttention(nn.Module):
    """x + dropout(SelfAttention(layer_norm(x)))."""

    def __init__(self, spec, has_relative_attention_bias, is_decoder, dtype):
        super().__init__()
        self.SelfAttention = T5Attention(spec, has_relative_attention_bias, is_decoder, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, hidden_states, additive_mask=None, position_bias=None, layer_cache=None, position=None):
        attention_output, position_bias, layer_cache = self.SelfAttention(
            self.layer_norm(hidden_states), additive_mask, position_bias=position_bias, layer_cache=layer_cache,
            position=position)  # (B, t, C)
        return hidden_states + self.dropout(attention_output), position_bias, layer_cache


class T5LayerCrossAttention(nn.Module):
    """y + dropout(EncDecAttention(layer_norm(y), keys and values from the encoder states))."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.EncDecAttention = T5Attention(spec, False, True, dtype)
        self.layer_norm = T5LayerNorm(spec, dtype)
        self.dropout = nn.Dropout(spec.dropout_rate)

    def forward(self, hidden_states, key_value_states, additive_mask=None, layer_cache=None):  # (B, t, C), (B, S, C)
        attention_output, _, _ = self.EncDecAttention(self.layer_norm(hidden_states), additive_mask,
                                                      key_value_states=key_value_states, layer_cache=layer_cache)
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

    def forward(self, hidden_states, additive_mask, position_bias, encoder_hidden_states=None, encoder_mask=None,
                layer_cache=None, position=None):
        """layer_cache: a decoder block's ((key, value) buffers of its self-attention, the encoder's
        (key, value) of its cross-attention), or None. -> (B, t, C), the position bias, the updated
        layer_cache or None"""
        self_cache, cross_cache = (None, None) if layer_cache is None else layer_cache
        hidden_states, position_bias, self_cache = self.layer[0](hidden_states, additive_mask, position_bias,
                                                                 self_cache, position)  # (B, t, C)
        if self.is_decoder:
            hidden_states = self.layer[1](hidden_states, encoder_hidden_states, encoder_mask, cross_cache)
        new_cache = None if layer_cache is None else (self_cache, cross_cache)
        return self.layer[-1](hidden_states), position_bias, new_cache  # (B, t, C)


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

    def forward(self, inputs_embeds, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                cache=None, position=None):
        """inputs_embeds (B, t, C); attention_mask (B, t) of these positions; the decoder's
        encoder_hidden_states (B, S, C) and their encoder_attention_mask (B, S). A cached decoder
        step instead: `cache` (init_cache's (blocks, encoder mask)), the ids at position ..
        position + t - 1, attending to the cache's max_len slots. -> (B, t, C), the updated cache or None"""
        dtype = inputs_embeds.dtype
        if self.is_decoder:
            key_length = None if cache is None else cache[0][0][0][0].shape[2]  # the cache's max_len
            mask = causal_mask(inputs_embeds.shape[1], attention_mask, dtype, inputs_embeds.device, position,
                               key_length)  # (B|1, 1, t, t | max_len)
        else:
            mask = padding_mask(attention_mask, dtype)  # (B, 1, 1, t) or None
        encoder_mask = padding_mask(encoder_attention_mask, dtype) if cache is None else cache[1]  # (B, 1, 1, S)
        hidden_states = self.dropout(inputs_embeds)
        position_bias = None
        new_blocks = []
        for i, block in enumerate(self.block):
            hidden_states, position_bias, layer_cache = block(hidden_states, mask, position_bias, encoder_hidden_states,
                                                              encoder_mask, None if cache is None else cache[0][i],
                                                              position)
            new_blocks.append(layer_cache)
        new_cache = None if cache is None else (tuple(new_blocks), encoder_mask)
        return self.dropout(self.final_layer_norm(hidden_states)), new_cache  # (B, t, C)


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
        encoder_hidden_states, _ = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, C)
        sequence_output, _ = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask,
                                          encoder_hidden_states, attention_mask)  # (B, T, C)
        return {"logits": self.lm_logits(sequence_output)}  # (B, T, V)

    def lm_logits(self, sequence_output):  # (B, T, C)
        """The head: tied, (y * d_model^-0.5 if scale_decoder_outputs) shared^T, or lm_head. -> (B, T, V)"""
        if self.output_scale is not None:
            sequence_output = sequence_output * self.output_scale
        if self.spec.tie_word_embeddings:
            return F.linear(sequence_output, self.shared.weight)  # (B, T, V)
        return self.lm_head(sequence_output)  # (B, T, V)

    def init_cache(self, batch, max_len, input_ids, attention_mask=None):  # B, max_len, (B, S), (B, S) or None
        """The encoder run once on the source, and per decoder block: zeroed self-attention key and
        value buffers (B, H, max_len, D) and the cross-attention's keys and values (B, H, S, D) of the
        encoder output; plus the encoder's additive padding mask (B, 1, 1, S) (zeros when no
        attention_mask). -> (blocks, encoder mask)"""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoder_hidden_states, _ = self.encoder(self.shared(input_ids), attention_mask)  # (B, S, C)
        weight = self.shared.weight
        shape = (batch, self.spec.num_heads, max_len, self.spec.d_kv)
        blocks = tuple(((torch.zeros(shape, dtype=weight.dtype, device=weight.device),
                         torch.zeros(shape, dtype=weight.dtype, device=weight.device)),
                        block.layer[1].EncDecAttention.key_value(encoder_hidden_states))
                       for block in self.decoder.block)
        return blocks, padding_mask(attention_mask, weight.dtype)

    def decode(self, decoder_input_ids, cache, position):  # (B, t), init_cache's cache, int or 0-d tensor
        """The logits of decoder ids at positions position .. position + t - 1, attending to the
        cache's earlier slots and to the encoder output: their keys and values are written into the
        cache (in place: the returned cache holds the same buffers). -> logits (B, t, V), cache"""
        sequence_output, cache = self.decoder(self.shared(decoder_input_ids), cache=cache, position=position)
        return self.lm_logits(sequence_output), cache  # (B, t, V)
