"""BERT with Hugging Face transformers' module structure and names: BertModel and BertForMaskedLM.

The equations, the mask semantics and the canonical names are in parity/specs/bert.py. The
classes are transformers' (modeling_bert.py), reduced to the encoder-only path: no cache, no
cross-attention, no chunking. Attention is written out rather than F.scaled_dot_product_attention
so the three frameworks run the same steps (transformers' "eager" attention): scores scaled after
the matmul, the extended mask added, softmax, dropout, the weighted values.
"""
import torch
import torch.nn.functional as F
from torch import nn

from pytorch_impl.activations import activation


def extended_attention_mask(attention_mask, dtype):  # (B, T) 0/1
    """transformers' additive mask: 0 where a key is attended, the dtype's minimum where not
    (finite, not -inf: a fully masked row stays finite and attends uniformly). -> (B, 1, 1, T)"""
    fill = torch.where(attention_mask.bool(), torch.zeros((), dtype=dtype, device=attention_mask.device),
                       torch.finfo(dtype).min)  # (B, T)
    return fill[:, None, None, :]  # (B, 1, 1, T): every head, every query


def layer_norm(spec, dtype):
    """transformers' nn.LayerNorm(hidden_size, eps=layer_norm_eps)."""
    return nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps, dtype=dtype)


class BertEmbeddings(nn.Module):
    """Word + token type + position embeddings, LayerNorm, dropout. transformers' `position_ids`
    and `token_type_ids` buffers are non-persistent (not in its state_dict): computed here."""

    def __init__(self, spec, dtype):
        super().__init__()
        # padding_idx: that row takes part in the forward pass, but its gradient is always 0.
        self.word_embeddings = nn.Embedding(spec.vocab_size, spec.hidden_size, padding_idx=spec.pad_token_id,
                                            dtype=dtype)
        self.position_embeddings = nn.Embedding(spec.max_position_embeddings, spec.hidden_size, dtype=dtype)
        self.token_type_embeddings = nn.Embedding(spec.type_vocab_size, spec.hidden_size, dtype=dtype)
        self.LayerNorm = layer_norm(spec, dtype)
        self.dropout = nn.Dropout(spec.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):  # (B, T) int64, (B, T) int64
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)  # (T,)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # transformers' order of the sums (rounding): (words + types) + positions
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        embeddings = embeddings + self.position_embeddings(position_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(embeddings))  # (B, T, H)


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over q, k, v Linears named as transformers'.
    The output projection is BertSelfOutput's, outside this module."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.num_attention_heads = spec.num_attention_heads
        self.attention_head_size = spec.head_size
        self.scaling = spec.head_size ** -0.5
        self.query = nn.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype)
        self.key = nn.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype)
        self.value = nn.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype)
        self.dropout = nn.Dropout(spec.attention_probs_dropout_prob)

    def heads(self, x, batch, length):  # (B, T, H)
        """-> (B, n, T, d): the hidden axis split into heads, heads before positions."""
        return x.reshape(batch, length, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T) additive
        batch, length = hidden_states.shape[:2]
        query = self.heads(self.query(hidden_states), batch, length)  # (B, n, T, d)
        key = self.heads(self.key(hidden_states), batch, length)  # (B, n, T, d)
        value = self.heads(self.value(hidden_states), batch, length)  # (B, n, T, d)
        scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling  # (B, n, T, T)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.dropout(torch.softmax(scores, dim=-1))  # (B, n, T, T)
        context = torch.matmul(probs, value).transpose(1, 2)  # (B, T, n, d)
        return context.reshape(*hidden_states.shape)  # (B, T, H)


class BertSelfOutput(nn.Module):
    """The attention's output projection, dropout, residual and post-norm."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.dense = nn.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype)
        self.LayerNorm = layer_norm(spec, dtype)
        self.dropout = nn.Dropout(spec.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):  # (B, T, H), (B, T, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)  # (B, T, H)


class BertAttention(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.self = BertSelfAttention(spec, dtype)
        self.output = BertSelfOutput(spec, dtype)

    def forward(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T)
        return self.output(self.self(hidden_states, attention_mask), hidden_states)  # (B, T, H)


class BertIntermediate(nn.Module):
    """The feed-forward block's expansion and activation (`hidden_act`, passed explicitly)."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.dense = nn.Linear(spec.hidden_size, spec.intermediate_size, dtype=dtype)
        self.intermediate_act_fn = activation(spec.activation)

    def forward(self, hidden_states):  # (B, T, H)
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, T, I)


class BertOutput(nn.Module):
    """The feed-forward block's projection back, dropout, residual and post-norm."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.dense = nn.Linear(spec.intermediate_size, spec.hidden_size, dtype=dtype)
        self.LayerNorm = layer_norm(spec, dtype)
        self.dropout = nn.Dropout(spec.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):  # (B, T, I), (B, T, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)  # (B, T, H)


class BertLayer(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.attention = BertAttention(spec, dtype)
        self.intermediate = BertIntermediate(spec, dtype)
        self.output = BertOutput(spec, dtype)

    def forward(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T)
        attention_output = self.attention(hidden_states, attention_mask)  # (B, T, H)
        return self.output(self.intermediate(attention_output), attention_output)  # (B, T, H)


class BertEncoder(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(spec, dtype) for _ in range(spec.num_hidden_layers)])

    def forward(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T)
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask)  # (B, T, H)
        return hidden_states


class BertPooler(nn.Module):
    """tanh(dense) of the first token's final hidden state ([CLS])."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.dense = nn.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype)

    def forward(self, hidden_states):  # (B, T, H)
        return torch.tanh(self.dense(hidden_states[:, 0]))  # (B, H)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.dense = nn.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype)
        self.transform_act_fn = activation(spec.activation)
        self.LayerNorm = layer_norm(spec, dtype)

    def forward(self, hidden_states):  # (B, T, H)
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))  # (B, T, H)


class BertLMPredictionHead(nn.Module):
    """The transform, then the decoder: the word embedding matrix (tied, passed in: the canonical
    state holds it once, where transformers' decoder Linear shares its Parameter) plus `bias`."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.transform = BertPredictionHeadTransform(spec, dtype)
        self.bias = nn.Parameter(torch.zeros(spec.vocab_size, dtype=dtype))

    def forward(self, hidden_states, decoder_weight):  # (B, T, H), (V, H)
        return F.linear(self.transform(hidden_states), decoder_weight, self.bias)  # (B, T, V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, spec, dtype):
        super().__init__()
        self.predictions = BertLMPredictionHead(spec, dtype)

    def forward(self, sequence_output, decoder_weight):  # (B, T, H), (V, H)
        return self.predictions(sequence_output, decoder_weight)  # (B, T, V)


class BertModel(nn.Module):
    """Embeddings, the encoder stack and (unless `add_pooling_layer` is False) the pooler."""

    def __init__(self, spec, dtype, add_pooling_layer=True):
        super().__init__()
        self.spec = spec
        self.embeddings = BertEmbeddings(spec, dtype)
        self.encoder = BertEncoder(spec, dtype)
        self.pooler = BertPooler(spec, dtype) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):  # (B, T) each
        embedding_output = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, embedding_output.dtype)
        sequence_output = self.encoder(embedding_output, mask)  # (B, T, H)
        if self.pooler is None:
            return {"last_hidden_state": sequence_output}
        return {"last_hidden_state": sequence_output, "pooler_output": self.pooler(sequence_output)}  # (B, H)


class BertForMaskedLM(nn.Module):
    """BertModel without its pooler (`bert`) and the masked-LM head (`cls`)."""

    def __init__(self, spec, dtype):
        super().__init__()
        self.spec = spec
        self.bert = BertModel(spec, dtype, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(spec, dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):  # (B, T) each
        sequence_output = self.bert(input_ids, attention_mask, token_type_ids)["last_hidden_state"]  # (B, T, H)
        return {"logits": self.cls(sequence_output, self.bert.embeddings.word_embeddings.weight)}  # (B, T, V)


def bert(spec, dtype):
    """The model of `spec.head`: BertModel ("none") or BertForMaskedLM ("mlm")."""
    return BertModel(spec, dtype) if spec.head == "none" else BertForMaskedLM(spec, dtype)
