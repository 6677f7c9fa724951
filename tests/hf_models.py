"""Hugging Face transformers' own models of parity specs (BERT, GPT-2, T5): the references the
test modules compare against. Random init, eval mode; the tensors transformers initialises to
constants (biases 0, norms 1/0, BERT's padding row 0) are drawn at random, so a model that ignored
one would not agree by accident. Imported by the tests (`from hf_models import ...`)."""
import numpy as np

# Config fields the specs carry under transformers' names (seq_len, target_len are ours).
BERT_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
               "type_vocab_size", "layer_norm_eps", "initializer_range", "pad_token_id")
GPT2_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
               "resid_pdrop", "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range",
               "scale_attn_weights", "scale_attn_by_inverse_layer_idx")
T5_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "relative_attention_num_buckets",
             "relative_attention_max_distance", "dropout_rate", "layer_norm_epsilon", "initializer_factor",
             "feed_forward_proj", "decoder_start_token_id", "pad_token_id")


def hf_config(transformers, spec, attn_implementation="eager"):
    """transformers' config of a parity spec. GPT-2: BOS/EOS inside the tiny vocabulary (its
    default 50256 only draws a warning). T5: EOS 1; `tie_word_embeddings` only sets
    scale_decoder_outputs in transformers 5.24 (the head is tied whatever it says)."""
    if spec.architecture == "bert":
        return transformers.BertConfig(**{name: getattr(spec, name) for name in BERT_FIELDS},
                                       attn_implementation=attn_implementation)
    if spec.architecture == "gpt2":
        return transformers.GPT2Config(**{name: getattr(spec, name) for name in GPT2_FIELDS},
                                       bos_token_id=spec.vocab_size - 1, eos_token_id=spec.vocab_size - 1,
                                       attn_implementation=attn_implementation)
    return transformers.T5Config(**{name: getattr(spec, name) for name in T5_FIELDS},
                                 num_decoder_layers=spec.decoder_layers, eos_token_id=1,
                                 tie_word_embeddings=spec.scales_decoder_outputs,
                                 attn_implementation=attn_implementation)


def hf_model(transformers, spec, dtype, attn_implementation="eager", seed=0):
    """transformers' own model of `spec`: BertModel or BertForMaskedLM (by the head),
    GPT2LMHeadModel, T5ForConditionalGeneration; random init from `seed`, eval mode, in `dtype`.
    Drawn at random: BERT's and GPT-2's biases and LayerNorms, BERT's padding row (in place, so the
    tied decoder follows; a pretrained checkpoint's is not 0 either), T5's norms; an untied T5 gets
    a head of its own, as from_pretrained leaves a checkpoint whose lm_head differs from `shared`."""
    import torch

    torch.manual_seed(seed)
    config = hf_config(transformers, spec, attn_implementation)
    if spec.architecture == "bert":
        model = (transformers.BertModel if spec.head == "none" else transformers.BertForMaskedLM)(config)
    elif spec.architecture == "gpt2":
        model = transformers.GPT2LMHeadModel(config)
    else:
        model = transformers.T5ForConditionalGeneration(config)
    drawn = {"bert": lambda name: name.endswith("bias") or "LayerNorm" in name,
             "gpt2": lambda name: name.endswith("bias") or ".ln_" in name,
             "t5": lambda name: "layer_norm" in name}[spec.architecture]
    with torch.no_grad():
        if spec.architecture == "t5" and not spec.tie_word_embeddings:
            model.lm_head.weight = torch.nn.Parameter(torch.randn(spec.vocab_size, spec.d_model))
        for name, param in model.named_parameters():
            if drawn(name):
                param.add_(0.5 * torch.randn_like(param))
        if spec.architecture == "bert":
            model.get_input_embeddings().weight[spec.pad_token_id].normal_(0, spec.initializer_range)
    model = model.eval()
    return model.double() if dtype == "float64" else model


def hf_state(model) -> dict[str, np.ndarray]:
    """transformers' state_dict() as numpy, unchanged: every tied alias included."""
    return {name: value.detach().cpu().numpy().copy() for name, value in model.state_dict().items()}
