"""The Transformer (`transformer`) against torch.nn.Transformer itself, in every framework: logits
and gradients, post-norm and pre-norm, ReLU and GELU, source padding, float32 and float64; state
dicts of torch.nn.Transformer load unchanged; padding and the causal mask change nothing they
should not; the positions are the paper's; bad inputs are clear errors."""
import math

import numpy as np
import pytest
import torch

import parity
from parity import decoding, tolerances
from parity.flops import forward_flops, train_step_flops
from parity.specs.attention import sinusoidal_positions

# The plain torch.nn.Transformer of `Reference` is built with torch's defaults on purpose: its
# nested-tensor fast path warns that it is a prototype, and its pre-norm encoder that it skips it.
pytestmark = [pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype:UserWarning"),
              pytest.mark.filterwarnings("ignore:enable_nested_tensor is True, but self.use_nested_tensor:UserWarning")]
FRAMEWORKS = parity.FRAMEWORKS
DTYPES = ["float32", "float64"]
VARIANTS = {"post-norm": {}, "pre-norm": {"norm_first": True}, "gelu": {"activation": "gelu"}}


def _spec(variant="post-norm", **overrides):
    return parity.spec("transformer", "tiny", **{**VARIANTS[variant], **overrides})


def _state(spec, dtype):
    return parity.init_state(spec, 3, dtype, random_norms=True)  # random LayerNorm affines: checked too


def _batch(spec, dtype, batch=4, seed=1):
    inputs, targets = parity.example_batch(spec, batch, seed, dtype)
    assert inputs["lengths"].min() < spec.source_len == inputs["lengths"][0]  # padding beside a full row
    return inputs, targets


@pytest.fixture(scope="module")
def models():
    """Built once per (framework, dtype, variant): tests only run them."""
    cache = {}

    def get(framework, dtype, variant="post-norm"):
        if (framework, dtype, variant) not in cache:
            spec = _spec(variant)
            cache[framework, dtype, variant] = parity.build(framework, spec, _state(spec, dtype))
        return cache[framework, dtype, variant]
    return get


class Reference:
    """A plain torch.nn.Transformer (default construction: nested tensors and fast paths as torch
    chooses them) holding the canonical state, with the embeddings, positions and head around it
    written out here."""

    def __init__(self, spec, state):
        self.spec = spec
        self.dtype = getattr(torch, next(iter(state.values())).dtype.name)
        self.transformer = torch.nn.Transformer(
            spec.d_model, spec.nhead, spec.num_encoder_layers, spec.num_decoder_layers, spec.dim_feedforward,
            spec.dropout, spec.activation, layer_norm_eps=spec.layer_norm_eps, batch_first=True,
            norm_first=spec.norm_first, dtype=self.dtype)
        self.transformer.load_state_dict({name.removeprefix("transformer."): torch.from_numpy(value)
                                          for name, value in state.items() if name.startswith("transformer.")})
        outside = ("encoder_embedding.weight", "decoder_embedding.weight", "head.weight", "head.bias")
        self.tensors = {name: torch.tensor(state[name], requires_grad=True) for name in outside}

    def embed(self, name, tokens):
        ids = torch.from_numpy(tokens)
        positions = torch.tensor(sinusoidal_positions(self.spec.max_len, self.spec.d_model)[:ids.shape[1]],
                                 dtype=self.dtype)
        return self.tensors[name][ids] * math.sqrt(self.spec.d_model) + positions

    def logits(self, inputs, train=False):
        self.transformer.train(train)
        padding = None
        if inputs.get("lengths") is not None:
            padding = torch.arange(inputs["tokens"].shape[1])[None, :] >= torch.from_numpy(inputs["lengths"])[:, None]
        steps = inputs["decoder_tokens"].shape[1]
        x = self.transformer(self.embed("encoder_embedding.weight", inputs["tokens"]),
                             self.embed("decoder_embedding.weight", inputs["decoder_tokens"]),
                             tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(steps, dtype=self.dtype),
                             src_key_padding_mask=padding, memory_key_padding_mask=padding)
        return torch.nn.functional.linear(x, self.tensors["head.weight"], self.tensors["head.bias"])

    def loss_and_grads(self, inputs, targets):
        logits = self.logits(inputs, train=True)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, -2), torch.from_numpy(targets).flatten())
        loss.backward()
        grads = {name: t.grad.numpy() for name, t in self.tensors.items()}
        grads.update({f"transformer.{name}": p.grad.numpy() for name, p in self.transformer.named_parameters()})
        return loss.item(), grads


def _assert_close(actual, expected, dtype, what, scale=None, kind="forward"):
    max_abs, max_rel = tolerances.errors(actual, expected, scale)
    tolerance = (tolerances.FORWARD if kind == "forward" else tolerances.GRADIENT)[dtype].rtol
    assert max_rel <= tolerance, f"{what}: max abs {max_abs:.2e}, rel {max_rel:.2e} (tolerance {tolerance:.0e})"


# ---------------------------------------------------------------------------- against torch.nn


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_logits_equal_torch_nn_transformer(models, framework, dtype, variant):
    """Against torch's eval-mode fast paths (no gradients: nested tensors and the fused encoder
    layer) and its plain path (gradients on), with source padding and without."""
    spec = _spec(variant)
    inputs, _ = _batch(spec, dtype)
    reference = Reference(spec, _state(spec, dtype))
    model = models(framework, dtype, variant)
    for given in (inputs, {name: value for name, value in inputs.items() if name != "lengths"}):
        logits = parity.forward(framework, model, given)["logits"]
        assert logits.shape == (4, spec.target_len, spec.target_vocab_size)
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                expected = reference.logits(given).detach().numpy()
            _assert_close(logits, expected, dtype, f"logits (lengths: {'lengths' in given}, torch grad={grad})")


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_gradients_equal_torch_autograd_in_training_mode(framework, dtype, norm_first):
    """Training mode with every dropout at 0 (spec.deterministic(): the frameworks' random streams
    cannot match): the loss and every parameter's gradient, against torch.nn.Transformer's."""
    spec = _spec(norm_first=norm_first).deterministic()
    state = _state(spec, dtype)
    inputs, targets = _batch(spec, dtype)
    loss, grads = parity.loss_and_grads(framework, parity.build(framework, spec, state), inputs, targets, train=True)
    expected_loss, expected = Reference(spec, state).loss_and_grads(inputs, targets)
    assert sorted(expected) == sorted(grads)
    assert loss == pytest.approx(expected_loss, rel=tolerances.FORWARD[dtype].rtol)
    scale = max(float(np.max(np.abs(g))) for g in expected.values())
    for name in expected:
        _assert_close(grads[name], expected[name], dtype, name, scale, kind="gradient")


def test_layout_is_torch_nn_transformers_state_dict_and_one_loads_unchanged():
    """The canonical names under `transformer.` are torch.nn.Transformer's state_dict keys, in its
    order (the final encoder.norm and decoder.norm included); a state dict torch initialised itself
    (xavier-uniform matrices, zero attention biases) loads in every framework and comes back bit
    for bit."""
    spec = _spec("pre-norm")
    module = torch.nn.Transformer(spec.d_model, spec.nhead, spec.num_encoder_layers, spec.num_decoder_layers,
                                  spec.dim_feedforward, spec.dropout, spec.activation,
                                  layer_norm_eps=spec.layer_norm_eps, batch_first=True, norm_first=True)
    names = [name for name in parity.layout(spec) if name.startswith("transformer.")]
    assert names == [f"transformer.{name}" for name in module.state_dict()]
    assert {"transformer.encoder.norm.weight", "transformer.decoder.norm.bias"} <= set(names)
    state = parity.init_state(spec, 0)
    state.update({f"transformer.{name}": value.numpy() for name, value in module.state_dict().items()})
    for framework in FRAMEWORKS:
        exported = parity.export_state(framework, parity.build(framework, spec, state))
        assert list(exported) == list(state)
        assert all(np.array_equal(exported[name], state[name]) for name in state), framework


def test_torch_model_is_torch_nn_transformer_with_dense_tensors():
    """parity's torch model holds torch.nn's own modules; its one change from nn.Transformer's
    defaults is enable_nested_tensor=False, so every encoder layer's output is a dense tensor (a
    default nn.Transformer hands NestedTensors between its layers in eval mode without gradients
    when a padding mask is given, zero at the padded positions)."""
    spec = _spec()
    model = parity.build("torch", spec, _state(spec, "float64"))
    assert isinstance(model.transformer, torch.nn.Transformer)
    assert all(isinstance(layer, torch.nn.TransformerEncoderLayer) for layer in model.transformer.encoder.layers)
    assert not model.transformer.encoder.enable_nested_tensor
    inputs, _ = _batch(spec, "float64")
    outputs, trace = parity.forward("torch", model, inputs, trace=True)
    padded = np.arange(spec.source_len)[None, :] >= inputs["lengths"][:, None]
    assert np.all(np.abs(trace["transformer.encoder.layers.0"][padded]) > 0)


# ---------------------------------------------------------------------------- masks


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1:UserWarning")  # Keras, a 1-token source
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_padded_source_positions_change_nothing(models, framework):
    """Any ids at the padded source positions give bit-identical logits, and every example equals
    itself run alone on its unpadded source."""
    spec = _spec()
    inputs, _ = _batch(spec, "float64")
    model = models(framework, "float64")
    logits = parity.forward(framework, model, inputs)["logits"]
    garbage = dict(inputs, tokens=inputs["tokens"].copy())
    padded = np.arange(spec.source_len)[None, :] >= inputs["lengths"][:, None]
    garbage["tokens"][padded] = np.random.default_rng(5).integers(0, spec.source_vocab_size, padded.sum())
    assert np.array_equal(parity.forward(framework, model, garbage)["logits"], logits)
    for b in np.flatnonzero(inputs["lengths"] < spec.source_len):
        n = inputs["lengths"][b]
        alone = parity.forward(framework, model, {"tokens": inputs["tokens"][b:b + 1, :n],
                                                  "decoder_tokens": inputs["decoder_tokens"][b:b + 1]})["logits"]
        np.testing.assert_allclose(alone[0], logits[b], rtol=0, atol=1e-13)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_decoder_sees_no_future_target(models, framework):
    """Changing the decoder's input at step t leaves every logit before t bit-identical (the causal
    mask) and changes the ones from t on."""
    spec = _spec()
    inputs, _ = _batch(spec, "float64")
    model = models(framework, "float64")
    logits = parity.forward(framework, model, inputs)["logits"]
    t = 2
    changed = dict(inputs, decoder_tokens=inputs["decoder_tokens"].copy())
    changed["decoder_tokens"][:, t] = (changed["decoder_tokens"][:, t] + 1) % spec.target_vocab_size
    again = parity.forward(framework, model, changed)["logits"]
    assert np.array_equal(again[:, :t], logits[:, :t])
    assert np.all(np.abs(again[:, t:] - logits[:, t:]).max(-1) > 0)


# ---------------------------------------------------------------------------- decoding


def _decoding_setup(dtype, variant="post-norm"):
    """A tiny model whose head is scaled up (x8): random tiny weights otherwise give nearly flat
    logits and one trivial hypothesis everywhere (seed 5: several hypotheses, greedy and beam
    differ). -> (model per framework, source)"""
    spec = _spec(variant)
    state = parity.init_state(spec, 5, dtype, random_norms=True)
    state["head.weight"] = state["head.weight"] * 8
    inputs, _ = parity.example_batch(spec, 8, 1, dtype)
    source = {"tokens": inputs["tokens"], "lengths": inputs["lengths"]}
    return {f: parity.build(f, spec, state) for f in FRAMEWORKS}, source


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1:UserWarning")  # Keras, one target id
@pytest.mark.parametrize("variant", ["post-norm", "pre-norm"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_decode_steps_are_the_forward_pass_on_the_ids_so_far(framework, variant):
    """Greedy parity.decoding over encode/decode_step (static max_len slots, the causal mask
    keeping the later ones out) picks, at every step, the argmax of the full forward pass over
    the ids emitted so far, with its log-probability; the attention is a distribution over the
    unpadded source."""
    models, source = _decoding_setup("float64", variant)
    model = models[framework]
    spec = model.spec
    result = decoding.decode(framework, model, source, max_len=6)
    fed = np.full((8, 1), spec.BOS)
    scores = np.zeros(8)
    for _ in range(6):
        logits = parity.forward(framework, model, {**source, "decoder_tokens": fed})["logits"][:, -1]
        chosen = logits.argmax(-1)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        running = fed[:, 1:]
        done = (running == spec.EOS).any(-1)
        scores = np.where(done, scores, scores + log_probs[np.arange(8), chosen])
        fed = np.concatenate([fed, chosen[:, None]], axis=1)
    for b, sequence in enumerate(result.sequences):
        ids = list(fed[b, 1:])
        assert list(sequence) == (ids[:ids.index(spec.EOS)] if spec.EOS in ids else ids)
        attention = result.attention[b]
        assert np.allclose(attention.sum(-1), 1, atol=1e-12)
        assert np.all(attention[:, source["lengths"][b]:] == 0)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-12, atol=1e-12)
    assert len({tuple(s) for s in result.sequences}) > 1


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1:UserWarning")  # Keras, one query slot
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_gives_the_same_hypotheses_in_every_framework(dtype):
    """Greedy and beam search (K=3) from one canonical state: the same ids in every framework,
    scores and cross-attention within rounding (the recurrent family's tolerances,
    tests/test_seq2seq.py)."""
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    models, source = _decoding_setup(dtype)
    results = {f: [decoding.decode(f, models[f], source, max_len=6),
                   decoding.decode(f, models[f], source, beam_size=3, max_len=6)] for f in FRAMEWORKS}
    torch_greedy, torch_beam = results["torch"]
    assert any(not np.array_equal(g, b) for g, b in zip(torch_greedy.sequences, torch_beam.sequences))
    for framework in FRAMEWORKS[1:]:
        for expected, got in zip(results["torch"], results[framework]):
            assert [list(s) for s in got.sequences] == [list(s) for s in expected.sequences], framework
            assert np.array_equal(got.finished, expected.finished)
            np.testing.assert_allclose(got.scores, expected.scores, rtol=tolerance, atol=tolerance)
            for a, b in zip(got.attention, expected.attention):
                np.testing.assert_allclose(a, b, rtol=0, atol=tolerance)


def test_decode_refuses_more_steps_than_the_positions_table():
    models, source = _decoding_setup("float64")
    spec = models["torch"].spec
    with pytest.raises(parity.InputError, match=rf"decode: expected max_len at most {spec.max_len} \(the "
                                                rf"transformer spec's max_len: the decoder's positions\), got 17"):
        decoding.decode("torch", models["torch"], source, max_len=spec.max_len + 1)
    with pytest.raises(parity.InputError, match=r"inputs\['tokens'\]: expected token ids"):
        decoding.decode("torch", models["torch"], dict(source, tokens=source["tokens"] + 100))


# ---------------------------------------------------------------------------- training mode


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dropout_acts_in_training_mode_only(models, framework):
    spec = _spec()
    inputs, _ = _batch(spec, "float64")
    model = models(framework, "float64")
    eval_logits = parity.forward(framework, model, inputs)["logits"]
    train_logits = parity.forward(framework, model, inputs, train=True, rng=3)["logits"]
    assert spec.dropout > 0 and not np.allclose(train_logits, eval_logits)
    assert np.array_equal(parity.forward(framework, model, inputs)["logits"], eval_logits)


# ---------------------------------------------------------------------------- the rest


def test_positions_are_the_papers_sinusoids():
    d = 8
    table = sinusoidal_positions(50, d)
    assert table.dtype == np.float64 and not table.flags.writeable
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-15)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-15)
    spec = _spec()
    assert spec.positional_encoding() is sinusoidal_positions(spec.max_len, d)  # computed once
    assert spec.embedding_scale == math.sqrt(spec.d_model)


def test_flop_count_matches_torch_counter_with_every_input():
    """parity.flops (every attention's in_proj thirds, scores and context in `activation_matmuls`)
    against torch's FlopCounterMode, forward and training step, with padding and teacher forcing."""
    from torch.utils.flop_counter import FlopCounterMode

    from pytorch_impl.api import loss_function
    from pytorch_impl.models import MODELS

    spec = _spec()
    inputs, targets = parity.example_batch(spec, 3)
    model = MODELS["transformer"](spec, torch.float32).train()
    tensors = {name: torch.from_numpy(value) for name, value in inputs.items()}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**tensors)
    assert counter.get_total_flops() == forward_flops(spec, 3)
    with FlopCounterMode(display=False) as counter:
        loss_function("cross_entropy", "float32")(model(**tensors)["logits"], torch.from_numpy(targets)).backward()
    assert counter.get_total_flops() == train_step_flops(spec, 3)


def test_bad_inputs_name_the_input_and_the_expectation():
    spec = _spec()
    inputs, _ = _batch(spec, "float32")
    model = parity.build("torch", spec)
    too_long = np.full((1, spec.max_len + 1), 5)
    with pytest.raises(parity.InputError, match=r"tokens'\]: expected at most 16 along S \(max_len\), got 17"):
        parity.forward("torch", model, {"tokens": too_long, "decoder_tokens": inputs["decoder_tokens"][:1]})
    with pytest.raises(parity.InputError,
                       match=r"decoder_tokens'\]: expected token ids \(the target vocabulary\).* in \[0, 12\)"):
        parity.forward("torch", model, {**inputs, "decoder_tokens": inputs["decoder_tokens"] + 12})
    with pytest.raises(parity.InputError, match=r"missing \['decoder_tokens'\]"):
        parity.forward("torch", model, {"tokens": inputs["tokens"]})
    with pytest.raises(parity.InputError,
                       match=r"lengths'\]: expected source lengths .* in \[1, 17\), got values in \[0,"):
        parity.forward("torch", model, {**inputs, "lengths": inputs["lengths"] * 0})
    with pytest.raises(parity.InputError, match=r"lengths'\]: expected shape \('B',\) with B=4, got \(3,\)"):
        parity.forward("torch", model, {**inputs, "lengths": inputs["lengths"][:3]})


@pytest.mark.parametrize("field, value, message", [
    ("activation", "tanh", r"activation: expected one of \['relu', 'gelu'\]"),
    ("nhead", 3, r"d_model: expected a multiple of nhead \(3\)"),
    ("source_len", 17, r"source_len: expected at most max_len \(16\)"),
    ("target_vocab_size", 2, r"target_vocab_size: expected an int > 2"),
    ("layer_norm_eps", 0.0, r"layer_norm_eps: expected a positive float"),
])
def test_spec_refuses_bad_fields(field, value, message):
    with pytest.raises(parity.SpecError, match=message):
        parity.spec("transformer", "tiny", **{field: value})


def test_reference_preset_is_the_papers_base_model():
    spec = parity.spec("transformer")
    assert (spec.d_model, spec.nhead, spec.num_encoder_layers, spec.num_decoder_layers, spec.dim_feedforward,
            spec.dropout, spec.norm_first) == (512, 8, 6, 6, 2048, 0.1, False)
    # The paper's ~65 M parameters share one 37 000 x 512 matrix three ways; here the two
    # embeddings and the head are separate (2 more copies) and torch adds the two final norms.
    params = sum(math.prod(p.shape) for p in parity.layout(spec).values())
    assert params == 44_140_544 + 3 * 37000 * 512 + 37000
