"""BERT with Hugging Face transformers' module structure and names: BertModel and BertForMaskedLM.

The equations, the mask semantics and the canonical names are in parity/specs/bert.py. The
classes are transformers' (modeling_bert.py), reduced to the encoder-only path: no cache, no
cross-attention, no chunking. Attention is written out rather than nnx.MultiHeadAttention: its
LinearGeneral projections hold (H, n, d) kernels (not transformers' q, k, v Linears), its output
projection sits inside it (transformers' is BertSelfOutput's `dense`), and its mask replaces
masked scores with the dtype's minimum where transformers adds it.

nnx.LayerNorm is given use_fast_variance=False: its default computes the variance as
E[x^2] - E[x]^2, which loses digits to cancellation where torch computes E[(x - mean)^2].
"""
import jax
import jax.numpy as jnp
from flax import nnx

from jax_impl.activations import activation


def extended_attention_mask(attention_mask, dtype):  # (B, T) 0/1
    """transformers' additive mask: 0 where a key is attended, the dtype's minimum where not
    (finite, not -inf: a fully masked row stays finite and attends uniformly). -> (B, 1, 1, T)"""
    fill = jnp.where(attention_mask.astype(bool), jnp.zeros((), dtype=dtype), jnp.finfo(dtype).min)  # (B, T)
    return fill[:, None, None, :]  # (B, 1, 1, T): every head, every query


def layer_norm(spec, dtype, *, rngs: nnx.Rngs):
    """transformers' nn.LayerNorm(hidden_size, eps=layer_norm_eps), torch's two-pass variance."""
    return nnx.LayerNorm(spec.hidden_size, epsilon=spec.layer_norm_eps, use_fast_variance=False, dtype=dtype,
                         param_dtype=dtype, rngs=rngs)


class BertEmbeddings(nnx.Module):
    """Word + token type + position embeddings, LayerNorm, dropout. transformers' `position_ids`
    and `token_type_ids` buffers are non-persistent (not in its state_dict): computed here."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.padding_idx = spec.pad_token_id
        self.word_embeddings = nnx.Embed(spec.vocab_size, spec.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.position_embeddings = nnx.Embed(spec.max_position_embeddings, spec.hidden_size, dtype=dtype,
                                             param_dtype=dtype, rngs=rngs)
        self.token_type_embeddings = nnx.Embed(spec.type_vocab_size, spec.hidden_size, dtype=dtype,
                                               param_dtype=dtype, rngs=rngs)
        self.LayerNorm = layer_norm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.hidden_dropout_prob, rngs=rngs)

    def __call__(self, input_ids, token_type_ids=None):  # (B, T) int, (B, T) int
        # lax.iota, not jnp.arange: jax2onnx loses the symbolic length of a jnp.arange (ONNX export)
        position_ids = jax.lax.iota(jnp.int32, input_ids.shape[1])  # (T,)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        inputs_embeds = self.word_embeddings(input_ids)  # (B, T, H)
        if self.padding_idx is not None:
            # torch.nn.Embedding's padding_idx, which nnx.Embed lacks: that row takes part in the
            # forward pass, but its gradient is always 0.
            padding = (input_ids == self.padding_idx)[..., None]  # (B, T, 1)
            inputs_embeds = jnp.where(padding, jax.lax.stop_gradient(inputs_embeds), inputs_embeds)
        # transformers' order of the sums (rounding): (words + types) + positions
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        embeddings = embeddings + self.position_embeddings(position_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(embeddings))  # (B, T, H)


class BertSelfAttention(nnx.Module):
    """Multi-head scaled dot-product self-attention over q, k, v Linears named as transformers'.
    The output projection is BertSelfOutput's, outside this module."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.num_attention_heads = spec.num_attention_heads
        self.attention_head_size = spec.head_size
        self.scaling = spec.head_size ** -0.5
        linear = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.query = nnx.Linear(spec.hidden_size, spec.hidden_size, **linear)
        self.key = nnx.Linear(spec.hidden_size, spec.hidden_size, **linear)
        self.value = nnx.Linear(spec.hidden_size, spec.hidden_size, **linear)
        self.dropout = nnx.Dropout(spec.attention_probs_dropout_prob, rngs=rngs)

    def heads(self, x, batch, length):  # (B, T, H)
        """-> (B, n, T, d): the hidden axis split into heads, heads before positions."""
        return x.reshape(batch, length, self.num_attention_heads, self.attention_head_size).transpose(0, 2, 1, 3)

    def __call__(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T) additive
        batch, length = hidden_states.shape[:2]
        query = self.heads(self.query(hidden_states), batch, length)  # (B, n, T, d)
        key = self.heads(self.key(hidden_states), batch, length)  # (B, n, T, d)
        value = self.heads(self.value(hidden_states), batch, length)  # (B, n, T, d)
        scores = jnp.matmul(query, key.transpose(0, 1, 3, 2)) * self.scaling  # (B, n, T, T)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.dropout(jax.nn.softmax(scores, axis=-1))  # (B, n, T, T)
        context = jnp.matmul(probs, value).transpose(0, 2, 1, 3)  # (B, T, n, d)
        return context.reshape(hidden_states.shape)  # (B, T, H)


class BertSelfOutput(nnx.Module):
    """The attention's output projection, dropout, residual and post-norm."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.LayerNorm = layer_norm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.hidden_dropout_prob, rngs=rngs)

    def __call__(self, hidden_states, input_tensor):  # (B, T, H), (B, T, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)  # (B, T, H)


class BertAttention(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.self = BertSelfAttention(spec, dtype, rngs=rngs)
        self.output = BertSelfOutput(spec, dtype, rngs=rngs)

    def __call__(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T)
        return self.output(self.self(hidden_states, attention_mask), hidden_states)  # (B, T, H)


class BertIntermediate(nnx.Module):
    """The feed-forward block's expansion and activation (`hidden_act`, passed explicitly)."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(spec.hidden_size, spec.intermediate_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.intermediate_act_fn = activation(spec.activation)

    def __call__(self, hidden_states):  # (B, T, H)
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, T, I)


class BertOutput(nnx.Module):
    """The feed-forward block's projection back, dropout, residual and post-norm."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(spec.intermediate_size, spec.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.LayerNorm = layer_norm(spec, dtype, rngs=rngs)
        self.dropout = nnx.Dropout(spec.hidden_dropout_prob, rngs=rngs)

    def __call__(self, hidden_states, input_tensor):  # (B, T, I), (B, T, H)
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)  # (B, T, H)


class BertLayer(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.attention = BertAttention(spec, dtype, rngs=rngs)
        self.intermediate = BertIntermediate(spec, dtype, rngs=rngs)
        self.output = BertOutput(spec, dtype, rngs=rngs)

    def __call__(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T)
        attention_output = self.attention(hidden_states, attention_mask)  # (B, T, H)
        return self.output(self.intermediate(attention_output), attention_output)  # (B, T, H)


class BertEncoder(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.layer = nnx.List([BertLayer(spec, dtype, rngs=rngs) for _ in range(spec.num_hidden_layers)])

    def __call__(self, hidden_states, attention_mask=None):  # (B, T, H), (B, 1, 1, T)
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask)  # (B, T, H)
        return hidden_states


class BertPooler(nnx.Module):
    """tanh(dense) of the first token's final hidden state ([CLS])."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)

    def __call__(self, hidden_states):  # (B, T, H)
        return jnp.tanh(self.dense(hidden_states[:, 0]))  # (B, H)


class BertPredictionHeadTransform(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(spec.hidden_size, spec.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.transform_act_fn = activation(spec.activation)
        self.LayerNorm = layer_norm(spec, dtype, rngs=rngs)

    def __call__(self, hidden_states):  # (B, T, H)
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))  # (B, T, H)


class BertLMPredictionHead(nnx.Module):
    """The transform, then the decoder: the word embedding matrix (tied, passed in: the canonical
    state holds it once, where transformers' decoder Linear shares its Parameter) plus `bias`."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.transform = BertPredictionHeadTransform(spec, dtype, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((spec.vocab_size,), dtype=dtype))

    def __call__(self, hidden_states, decoder_weight):  # (B, T, H), (V, H)
        return jnp.matmul(self.transform(hidden_states), decoder_weight.T) + self.bias[...]  # (B, T, V)


class BertOnlyMLMHead(nnx.Module):
    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.predictions = BertLMPredictionHead(spec, dtype, rngs=rngs)

    def __call__(self, sequence_output, decoder_weight):  # (B, T, H), (V, H)
        return self.predictions(sequence_output, decoder_weight)  # (B, T, V)


class BertModel(nnx.Module):
    """Embeddings, the encoder stack and (unless `add_pooling_layer` is False) the pooler."""

    def __init__(self, spec, dtype, add_pooling_layer=True, *, rngs: nnx.Rngs):
        self.spec = spec
        self.embeddings = BertEmbeddings(spec, dtype, rngs=rngs)
        self.encoder = BertEncoder(spec, dtype, rngs=rngs)
        self.pooler = BertPooler(spec, dtype, rngs=rngs) if add_pooling_layer else None

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):  # (B, T) each
        embedding_output = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, embedding_output.dtype)
        sequence_output = self.encoder(embedding_output, mask)  # (B, T, H)
        if self.pooler is None:
            return {"last_hidden_state": sequence_output}
        return {"last_hidden_state": sequence_output, "pooler_output": self.pooler(sequence_output)}  # (B, H)


class BertForMaskedLM(nnx.Module):
    """BertModel without its pooler (`bert`) and the masked-LM head (`cls`)."""

    def __init__(self, spec, dtype, *, rngs: nnx.Rngs):
        self.spec = spec
        self.bert = BertModel(spec, dtype, add_pooling_layer=False, rngs=rngs)
        self.cls = BertOnlyMLMHead(spec, dtype, rngs=rngs)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None):  # (B, T) each
        sequence_output = self.bert(input_ids, attention_mask, token_type_ids)["last_hidden_state"]  # (B, T, H)
        return {"logits": self.cls(sequence_output, self.bert.embeddings.word_embeddings.embedding[...])}  # (B, T, V)


def bert(spec, dtype, *, rngs: nnx.Rngs):
    """The model of `spec.head`: BertModel ("none") or BertForMaskedLM ("mlm")."""
    return BertModel(spec, dtype, rngs=rngs) if spec.head == "none" else BertForMaskedLM(spec, dtype, rngs=rngs)
