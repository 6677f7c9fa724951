"""BERT against Hugging Face transformers itself: BertModel's and BertForMaskedLM's state dicts load
unchanged in all three frameworks, which reproduce transformers' outputs, losses and gradients;
the pitfalls (the finite mask fill and a fully masked row, padding_idx's gradient, LayerNorm eps
1e-12, exact GELU, the tied decoder) each have a test here."""
import numpy as np
import pytest

import parity
from parity import tolerances
from parity.tolerances import relative_error
from parity.specs.base import IGNORE_INDEX

from hf_models import hf_model, hf_state

FRAMEWORKS = parity.FRAMEWORKS
DTYPES = ["float32", "float64"]
PRESETS = ["tiny", "tiny-mlm"]


def case_spec(preset):
    """The spec of a case (conftest's `cases` and `models` fixtures)."""
    return parity.spec("bert", preset)


def hf_outputs(model, spec, inputs):
    import torch

    with torch.no_grad():
        outputs = model(**{name: torch.from_numpy(value) for name, value in inputs.items()})
    return {name: getattr(outputs, name).numpy() for name in spec.output_names}


def hf_loss_and_grads(model, spec, inputs, targets):
    """transformers' loss of the spec's kind and the gradient of every parameter (0 where it has
    none: the pooler under a loss on last_hidden_state), by canonical name."""
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    torch_inputs = {name: torch.from_numpy(value) for name, value in inputs.items()}
    if spec.head == "none":
        loss = F.mse_loss(model(**torch_inputs).last_hidden_state, torch.from_numpy(targets))
    else:  # BertForMaskedLM's own loss: CrossEntropyLoss over the labels that are not -100
        loss = model(**torch_inputs, labels=torch.from_numpy(targets)).loss
    loss.backward()
    return loss.item(), {name: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy().copy()
                         for name, p in model.named_parameters()}


def test_spec_from_a_bert_config_dict(transformers):
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=37, hidden_act="gelu_new")
    with pytest.warns(UserWarning, match=r"ignored Hugging Face config keys .*'tie_word_embeddings'"):
        spec = parity.spec("bert", **config.to_dict())
    assert (spec.vocab_size, spec.hidden_size, spec.num_hidden_layers, spec.num_attention_heads,
            spec.intermediate_size, spec.max_position_embeddings, spec.type_vocab_size) == (99, 32, 3, 4, 37, 512, 2)
    assert (spec.hidden_act, spec.activation, spec.layer_norm_eps, spec.pad_token_id) == ("gelu_new", "gelu_tanh",
                                                                                         1e-12, 0)
    # seq_len (the example length, not a BertConfig field) stays the preset's 128: a shorter
    # positions table needs it given too, and says so
    short = transformers.BertConfig(max_position_embeddings=64).to_dict()
    with pytest.warns(UserWarning), pytest.raises(parity.SpecError, match=r"bert.seq_len: expected at most "
                                                                          r"max_position_embeddings \(64\), got 128"):
        parity.spec("bert", **short)
    with pytest.warns(UserWarning):
        assert parity.spec("bert", **short, seq_len=64).max_position_embeddings == 64


def test_bert_base_preset_is_bert_base_uncased(transformers):
    spec = parity.spec("bert")
    config = transformers.BertConfig()  # its defaults are bert-base-uncased's
    assert spec.reference_preset == "bert-base" and spec.head == "none" and spec.seq_len == 128
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "initializer_range",
                 "pad_token_id", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        assert getattr(spec, name) == getattr(config, name), name
    parameters = sum(int(np.prod(p.shape)) for p in spec.layout().values())
    assert parameters == 109_482_240  # BertModel(BertConfig()).num_parameters()


@pytest.mark.parametrize("preset", PRESETS)
def test_layout_is_transformers_state_dict_less_its_tied_aliases(transformers, preset):
    """The names, shapes and order of transformers' state_dict(); the position_ids and
    token_type_ids buffers are non-persistent there (not in it), and BertForMaskedLM's extra
    entries are exactly the tied decoder weight and bias."""
    spec = parity.spec("bert", preset)
    state = hf_state(hf_model(transformers, spec, "float32"))
    layout = parity.layout(spec)
    assert [n for n in state if n in layout] == list(layout)
    assert {n: v.shape for n, v in state.items() if n in layout} == {n: p.shape for n, p in layout.items()}
    assert set(state) - set(layout) == set(spec.tied_weights())
    assert not any("position_ids" in n or n.endswith("embeddings.token_type_ids") for n in state)


def test_init_matches_transformers_distributions():
    spec = parity.spec("bert", "tiny-mlm")
    state = parity.init_state(spec, 0)
    word = state["bert.embeddings.word_embeddings.weight"]
    assert abs(word.std() - spec.initializer_range) < 0.2 * spec.initializer_range
    assert not state["cls.predictions.bias"].any() and not state["bert.encoder.layer.0.output.dense.bias"].any()
    assert (state["bert.embeddings.LayerNorm.weight"] == 1).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("preset", PRESETS)
def test_reproduces_transformers_outputs(cases, preset, framework, dtype):
    """transformers' state dict, unchanged (aliases and all), loads; the outputs match its eager
    attention with padding in the mask and random token types."""
    spec, model, state, inputs, _ = cases(preset, dtype)
    assert inputs["attention_mask"][1:].min() == 0 and inputs["token_type_ids"].max() == 1
    expected = hf_outputs(model, spec, inputs)
    ours = parity.forward(framework, parity.build(framework, spec, state), inputs)
    for name in spec.output_names:
        error = relative_error(ours[name], expected[name])
        assert error <= tolerances.FORWARD[dtype].rtol, (name, error)


def test_save_pretrained_checkpoint_and_config_load_as_they_are(transformers, tmp_path):
    """What a user has on disk: transformers' save_pretrained folder (model.safetensors, which
    leaves the tied decoder out, and config.json). parity.load_state reads the weights, the
    config's keys give the spec (plus ours: the head, and seq_len within its positions table)."""
    import json

    spec = parity.spec("bert", "tiny-mlm")
    model = hf_model(transformers, spec, "float32")
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    with pytest.warns(UserWarning, match="ignored Hugging Face config keys"):
        loaded_spec = parity.spec("bert", **config, head="mlm", seq_len=spec.seq_len)
    assert loaded_spec == spec
    state = parity.load_state(tmp_path / "model.safetensors", loaded_spec)
    inputs, _ = parity.example_batch(spec, 3, 2)
    expected = hf_outputs(model, spec, inputs)["logits"]
    for framework in FRAMEWORKS:
        ours = parity.forward(framework, parity.build(framework, loaded_spec, state), inputs)["logits"]
        assert relative_error(ours, expected) <= tolerances.FORWARD["float32"].rtol, framework


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_reproduces_transformers_default_sdpa_attention_on_padded_rows(transformers, cases, framework):
    """transformers' default attention ("sdpa", a bool mask) agrees with the additive fill wherever
    a row has a valid key."""
    spec, _, state, inputs, _ = cases("tiny", "float32")
    model = hf_model(transformers, spec, "float32", attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    expected = hf_outputs(model, spec, inputs)
    ours = parity.forward(framework, parity.build(framework, spec, hf_state(model)), inputs)
    for name in spec.output_names:
        assert relative_error(ours[name], expected[name]) <= tolerances.FORWARD["float32"].rtol, name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_optional_inputs_default_to_all_attended_and_type_zero(cases, framework):
    spec, model, state, inputs, _ = cases("tiny", "float64")
    ids = {"input_ids": inputs["input_ids"]}
    expected = hf_outputs(model, spec, ids)
    ours = parity.forward(framework, parity.build(framework, spec, state), ids)
    for name in spec.output_names:
        assert relative_error(ours[name], expected[name]) <= tolerances.FORWARD["float64"].rtol, name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fully_masked_row_attends_uniformly_like_transformers_eager(transformers, cases, framework):
    """The mask adds finfo(dtype).min (finite): a row whose every key is masked has all its scores
    equal to that minimum, so it attends uniformly to all T keys, padding included, and stays
    finite (transformers' eager attention). transformers' default sdpa attention gives that row
    a context of zeros instead: the two transformers differ there, and nowhere else."""
    spec, model, state, inputs, _ = cases("tiny", "float64")
    inputs = {**inputs, "attention_mask": inputs["attention_mask"].copy()}
    inputs["attention_mask"][2] = 0
    eager = hf_outputs(model, spec, inputs)
    ours = parity.forward(framework, parity.build(framework, spec, state), inputs)
    assert np.isfinite(ours["last_hidden_state"]).all()
    for name in spec.output_names:
        assert relative_error(ours[name], eager[name]) <= tolerances.FORWARD["float64"].rtol, name
    sdpa_model = hf_model(transformers, spec, "float64", attn_implementation="sdpa")
    contexts = []
    sdpa_model.encoder.layer[0].attention.self.register_forward_hook(lambda m, a, out: contexts.append(out[0]))
    sdpa = hf_outputs(sdpa_model, spec, inputs)
    assert not contexts[0][2].any() and contexts[0][1].abs().min() > 0  # sdpa: that row's context is 0
    rows = np.abs(sdpa["last_hidden_state"] - eager["last_hidden_state"]).max(axis=(1, 2))
    assert rows[2] > 1e-3 and np.delete(rows, 2).max() < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("preset", PRESETS)
def test_loss_and_gradients_match_transformers_backward(cases, preset, framework, dtype):
    """mse of last_hidden_state (BertModel), BertForMaskedLM's own -100-label loss (mlm): the loss
    and every parameter's gradient, the tied word embeddings receiving both of their uses.
    transformers' state dict goes in through parity.load_model_state into a built model here."""
    spec, model, state, inputs, targets = cases(preset, dtype)
    if spec.head == "mlm":
        assert (targets == IGNORE_INDEX).any() and (targets != IGNORE_INDEX).any()
    expected_loss, expected = hf_loss_and_grads(model, spec, inputs, targets)
    model = parity.load_model_state(framework, parity.build(framework, spec, dtype=dtype), state)  # aliases and all
    loss, grads = parity.loss_and_grads(framework, model, inputs, targets)
    assert loss == pytest.approx(expected_loss, rel=tolerances.FORWARD[dtype].rtol)
    assert set(grads) == set(expected)
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for name in grads:
        error = relative_error(grads[name], expected[name], scale)
        assert error <= tolerances.GRADIENT[dtype].rtol, (name, error)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_padding_row_gets_no_gradient(cases, framework):
    """transformers' word embeddings are nn.Embedding(padding_idx=pad_token_id): the row is used
    in the forward pass but its lookups pass no gradient back (Keras and Flax embeddings have no
    such option). Under the mlm head the tied decoder still gives that row its logit's gradient,
    as in transformers (test_loss_and_gradients_match_transformers_backward)."""
    spec, _, state, inputs, targets = cases("tiny", "float64")
    pad, name = spec.pad_token_id, "embeddings.word_embeddings.weight"
    assert (inputs["input_ids"] == pad).sum() > 1 and state[name][pad].any()
    _, grads = parity.loss_and_grads(framework, parity.build(framework, spec, state), inputs, targets)
    assert not grads[name][pad].any()
    assert np.abs(np.delete(grads[name], pad, axis=0)).max() > 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_eps_and_activation_come_from_the_spec(transformers, framework):
    """A large layer_norm_eps and each hidden_act, against transformers: a framework that kept
    its own default eps (1e-3 Keras, 1e-6 Flax, 1e-5 torch) or GELU flavour would be off by far
    more than float64 rounding."""
    for hidden_act, eps in (("gelu_new", 0.3), ("relu", 1e-12), ("gelu", 0.05)):
        spec = parity.spec("bert", "tiny-mlm", hidden_act=hidden_act, layer_norm_eps=eps)
        model = hf_model(transformers, spec, "float64")
        inputs, _ = parity.example_batch(spec, 3, 1, "float64")
        expected = hf_outputs(model, spec, inputs)["logits"]
        ours = parity.forward(framework, parity.build(framework, spec, hf_state(model)), inputs)["logits"]
        assert relative_error(ours, expected) <= tolerances.FORWARD["float64"].rtol, hidden_act


def test_tied_alias_must_equal_its_target(cases):
    _, _, state, _, _ = cases("tiny-mlm", "float32")
    spec = parity.spec("bert", "tiny-mlm")
    assert set(parity.state.check_state(spec, state)) == set(parity.layout(spec))
    untied = {**state, "cls.predictions.decoder.bias": state["cls.predictions.bias"] + 1}
    with pytest.raises(parity.StateError, match=r"cls.predictions.decoder.bias: expected the tied weight "
                                                r"cls.predictions.bias \(the same tensor\), got a different tensor"):
        parity.build("torch", spec, untied)


@pytest.fixture(scope="module")
def tiny_models():
    spec = parity.spec("bert", "tiny")
    return spec, {framework: parity.build(framework, spec) for framework in FRAMEWORKS}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bad_inputs_name_expected_and_given(tiny_models, framework):
    spec, models = tiny_models
    model = models[framework]
    inputs, _ = parity.example_batch(spec, 2)
    too_long = np.zeros((2, spec.max_position_embeddings + 1), np.int64)
    with pytest.raises(parity.InputError, match=r"inputs\['input_ids'\]: expected at most 12 along T "
                                                r"\(max_position_embeddings\), got 13"):
        parity.forward(framework, model, {"input_ids": too_long})
    bad_ids = inputs["input_ids"].copy()
    bad_ids[1, 2] = spec.vocab_size
    with pytest.raises(parity.InputError, match=r"inputs\['input_ids'\]: expected token ids \(the vocabulary\) "
                                                r"in \[0, 32\), got values in \[0, 32\]"):
        parity.forward(framework, model, {**inputs, "input_ids": bad_ids})
    bad_types = inputs["token_type_ids"].copy()
    bad_types[0, 0] = spec.type_vocab_size
    with pytest.raises(parity.InputError, match=r"inputs\['token_type_ids'\]: expected token type ids "
                                                r"\(segments\) in \[0, 2\), got values in \[0, 2\]"):
        parity.forward(framework, model, {**inputs, "token_type_ids": bad_types})
    with pytest.raises(parity.InputError, match=r"inputs\['attention_mask'\]: expected shape \('B', 'T'\) "
                                                r"with B=2 T=7, got \(2, 6\)"):
        parity.forward(framework, model, {**inputs, "attention_mask": inputs["attention_mask"][:, :6]})
    with pytest.raises(parity.InputError, match=r"inputs\['attention_mask'\]: expected attention mask "
                                                r"\(1 = attend, 0 = padding\) in \[0, 2\), got values in \[0, 2\]"):
        parity.forward(framework, model, {**inputs, "attention_mask": inputs["attention_mask"] * 2})


def test_example_inputs_pad_every_row_but_the_first():
    spec = parity.spec("bert", "tiny-mlm")
    inputs, targets = parity.example_batch(spec, 5)
    mask = inputs["attention_mask"]
    assert mask[0].all() and not mask[1:, -1].any() and mask[:, 0].all()
    assert (np.diff(mask, axis=1) <= 0).all()  # right-padded
    assert (inputs["input_ids"][mask == 0] == spec.pad_token_id).all()
    assert (targets[mask == 0] == IGNORE_INDEX).all() and targets[0, 0] != IGNORE_INDEX


def test_spec_validation_names_field_and_value():
    with pytest.raises(parity.SpecError, match=r"bert.hidden_act: expected one of \['gelu', 'gelu_new', 'relu'\], "
                                               r"got 'gelu_python'"):
        parity.spec("bert", "tiny", hidden_act="gelu_python")
    with pytest.raises(parity.SpecError, match=r"bert.hidden_size: expected a multiple of num_attention_heads \(3\)"):
        parity.spec("bert", "tiny", num_attention_heads=3)
    with pytest.raises(parity.SpecError, match=r"bert.seq_len: expected at most max_position_embeddings \(12\)"):
        parity.spec("bert", "tiny", seq_len=13)
    with pytest.raises(parity.SpecError, match=r"bert.head: expected one of \['none', 'mlm'\], got 'nsp'"):
        parity.spec("bert", "tiny", head="nsp")


def test_mlm_flop_count_matches_torch_counter():
    """parity.flops for the masked-LM head (the registry's flop test runs the "tiny" BertModel):
    the tied decoder is a matmul against an embedding-kind weight, counted by the spec's
    activation_matmuls; the masks and token types are passed as in use."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from parity.flops import forward_flops, train_step_flops
    from pytorch_impl.api import loss_function
    from pytorch_impl.models import MODELS

    spec = parity.spec("bert", "tiny-mlm")
    inputs, targets = parity.example_batch(spec, 3)
    with torch.device("meta"):
        model = MODELS["bert"](spec, torch.float32).train()

    def run():
        named = {name: torch.from_numpy(value).to("meta") for name, value in inputs.items()}
        return model(named.pop("input_ids"), **named)["logits"]

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    assert counter.get_total_flops() == forward_flops(spec, 3)
    with FlopCounterMode(display=False) as counter:
        loss_function(spec.loss, "float32")(run(), torch.from_numpy(targets).to("meta")).backward()
    assert counter.get_total_flops() == train_step_flops(spec, 3)


@pytest.mark.slow
def test_bert_base_reproduces_transformers(transformers):
    """bert-base-uncased's sizes (110 M parameters), float32, batch 2 x 128 positions with padding:
    measured 9.2e-7 (last_hidden_state) and 1.6e-6 (pooler_output) worst, Flax; torch bit-exact."""
    spec = parity.spec("bert")
    model = hf_model(transformers, spec, "float32")
    state = hf_state(model)
    inputs, _ = parity.example_batch(spec, 2, 0, "float32")
    expected = hf_outputs(model, spec, inputs)
    del model
    for framework in FRAMEWORKS:
        ours = parity.forward(framework, parity.build(framework, spec, state), inputs)
        for name in spec.output_names:
            assert relative_error(ours[name], expected[name]) <= tolerances.FORWARD["float32"].rtol, (framework, name)


def test_keras_read_only_output_property_is_shadowed_for_transformers_names():
    """keras.layers.Layer has a read-only `output` property (a functional model's output), so
    `self.output = ...` raises; BertAttention and BertLayer shadow it to keep transformers' path
    `encoder.layer.{i}.output.dense` (and `attention.output`)."""
    import keras

    from keras_impl.models.bert import BertLayer, BertOutput, BertSelfOutput

    class Plain(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.output = keras.layers.Dense(2)

    with pytest.raises(AttributeError, match="output"):
        Plain()
    layer = BertLayer(parity.spec("bert", "tiny"), "float32")
    assert isinstance(layer.output, BertOutput) and isinstance(layer.attention.output, BertSelfOutput)


def test_flax_layer_norm_uses_torchs_two_pass_variance():
    """nnx.LayerNorm's default use_fast_variance=True computes E[x^2] - E[x]^2, which cancels on a
    residual stream whose mean is far from 0: at mean 300, std 1 in float32, measured 2.2e-2 off
    torch's E[(x - mean)^2]; the models' LayerNorm (use_fast_variance=False) 2e-5 (the rounding of
    x - mean itself)."""
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from jax_impl.models.bert import layer_norm

    spec = parity.spec("bert", "tiny")
    x = (300 + np.random.default_rng(0).standard_normal((4, spec.hidden_size))).astype("float32")
    expected = torch.nn.functional.layer_norm(torch.from_numpy(x), (spec.hidden_size,), eps=spec.layer_norm_eps)
    ours = np.asarray(layer_norm(spec, jnp.float32, rngs=nnx.Rngs(0))(jnp.asarray(x)))
    fast = np.asarray(nnx.LayerNorm(spec.hidden_size, epsilon=spec.layer_norm_eps, rngs=nnx.Rngs(0))(jnp.asarray(x)))
    assert relative_error(ours, expected.numpy()) < 1e-4 < 1e-3 < relative_error(fast, expected.numpy())
