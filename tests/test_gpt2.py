"""GPT-2 against Hugging Face transformers itself: GPT2LMHeadModel's state dict (its tied
`lm_head.weight` alias included) loads unchanged in all three frameworks, which reproduce
transformers' logits, loss and gradients; the pitfalls (the finite mask fill and a fully masked
row, GELU's tanh approximation, the (in, out) Conv1D layout, the tied head, transformers'
float32 causal-LM loss, its label shift) each have a test here; and the KV cache's step-by-step
logits equal the uncached forward pass in every framework."""
import contextlib

import numpy as np
import pytest

import parity
from parity import tolerances
from parity.tolerances import relative_error

from hf_models import GPT2_FIELDS, hf_config, hf_model, hf_state

FRAMEWORKS = parity.FRAMEWORKS
DTYPES = ["float32", "float64"]
# Variants of the tiny preset checked against transformers besides the default one.
VARIANTS = {
    "default": {},
    "gelu-exact": {"activation_function": "gelu"},
    "relu": {"activation_function": "relu"},
    "unscaled-n_inner": {"scale_attn_weights": False, "n_inner": 12},
    "inverse-layer-scale": {"scale_attn_by_inverse_layer_idx": True, "n_layer": 3},
}


def case_spec(variant):
    """The spec of a case (conftest's `cases` and `models` fixtures)."""
    return parity.spec("gpt2", "tiny", **VARIANTS[variant])


def hf_logits(model, inputs):
    import torch

    with torch.no_grad():
        return model(**{name: torch.from_numpy(value) for name, value in inputs.items()}).logits.numpy()


def hf_loss_and_grads(model, inputs, targets):
    """The spec's loss on transformers' logits (cross-entropy over every position, targets as given:
    the caller shifted them) and the gradient of every parameter by canonical name: `wte`'s sums the
    embedding's and the tied head's (named_parameters() lists the tied tensor once)."""
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    logits = model(**{name: torch.from_numpy(value) for name, value in inputs.items()}).logits
    loss = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(targets).flatten())
    loss.backward()
    return loss.item(), {name: p.grad.numpy().copy() for name, p in model.named_parameters()}


# ---------------------------------------------------------------------------- spec and layout


def test_spec_from_a_gpt2_config_dict(transformers):
    config = transformers.GPT2Config(vocab_size=99, n_positions=32, n_embd=24, n_layer=3, n_head=4, n_inner=40,
                                     activation_function="gelu", layer_norm_epsilon=1e-6)
    with pytest.warns(UserWarning, match=r"ignored Hugging Face config keys .*'tie_word_embeddings'"):
        spec = parity.spec("gpt2", "tiny", **config.to_dict())
    assert (spec.vocab_size, spec.n_positions, spec.n_embd, spec.n_layer, spec.n_head, spec.n_inner,
            spec.inner_dim) == (99, 32, 24, 3, 4, 40, 40)
    assert (spec.activation_function, spec.activation, spec.layer_norm_epsilon, spec.seq_len) == ("gelu", "gelu",
                                                                                                 1e-6, 6)
    # seq_len (the example length, not a GPT2Config field) stays the preset's: the reference
    # preset's 1024 needs a positions table that long, and says so
    with pytest.warns(UserWarning), pytest.raises(parity.SpecError, match=r"gpt2.seq_len: expected at most "
                                                                          r"n_positions \(32\), .*got 1024"):
        parity.spec("gpt2", **config.to_dict())


def test_gpt2_preset_is_the_124m_model(transformers):
    spec = parity.spec("gpt2")
    config = transformers.GPT2Config()  # its defaults are openai-community/gpt2's
    assert spec.reference_preset == "gpt2" and spec.seq_len == 1024
    for name in GPT2_FIELDS:
        assert getattr(spec, name) == getattr(config, name), name
    parameters = sum(int(np.prod(p.shape)) for p in spec.layout().values())
    assert parameters == 124_439_808  # GPT2LMHeadModel(GPT2Config()).num_parameters(): the tied head counted once


@pytest.mark.parametrize("variant", ["default", "unscaled-n_inner"])
def test_layout_is_transformers_state_dict_less_the_tied_head(transformers, variant):
    """The names, shapes and order of transformers' state_dict(), whose one extra entry is the tied
    head; transformers 5.24 holds no buffer there (no `attn.bias` causal mask, no `masked_bias`)."""
    spec = parity.spec("gpt2", "tiny", **VARIANTS[variant])
    model = hf_model(transformers, spec, "float32")
    state = hf_state(model)
    layout = parity.layout(spec)
    assert [n for n in state if n in layout] == list(layout)
    assert {n: v.shape for n, v in state.items() if n in layout} == {n: p.shape for n, p in layout.items()}
    assert set(state) - set(layout) == {"lm_head.weight"} == set(spec.tied_weights())
    assert model.lm_head.weight is model.transformer.wte.weight  # one tensor, two names
    assert not any(n.endswith((".attn.bias", ".attn.masked_bias")) for n in state)
    assert not list(model.buffers())


def test_init_matches_transformers_init(transformers):
    """Every weight normal(0, initializer_range), the residual projections c_proj with
    std / sqrt(2 n_layer), biases 0, LayerNorm 1/0: per tensor, the standard deviation of our
    init_state and of transformers' own init agree (within the sampling error of ~4096+ draws)."""
    import torch

    spec = parity.spec("gpt2", "tiny", vocab_size=512, n_positions=64, n_embd=64, n_layer=4, n_head=4, seq_len=8)
    state = parity.init_state(spec, 0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(hf_config(transformers, spec))
    reference = {name: value.numpy() for name, value in model.state_dict().items()}
    for name, param in parity.layout(spec).items():
        ours, theirs = state[name], reference[name]
        if param.init == "normal":
            expected = 0.02 / np.sqrt(2 * spec.n_layer) if name.endswith("c_proj.weight") else 0.02
            assert param.meta["std"] == pytest.approx(expected), name
            assert abs(ours.std() / theirs.std() - 1) < 0.1 and abs(ours.std() / expected - 1) < 0.1, name
        else:
            assert np.array_equal(ours, theirs), name


def test_a_differing_lm_head_is_refused(cases):
    """The alias loads only when it IS the embedding: an untied head would be silently dropped."""
    spec, _, state, _, _ = cases("default", "float32")
    untied = {**state, "lm_head.weight": state["lm_head.weight"] + 1}
    with pytest.raises(parity.StateError, match=r"lm_head.weight: expected the tied weight transformer.wte.weight"):
        parity.build("torch", spec, untied)


@pytest.mark.parametrize("framework", ["keras", "jax"])
def test_conv1d_weights_are_native_kernels_without_a_transpose(models, cases, framework):
    """transformers' Conv1D stores (in, out), already the Dense / nnx.Linear kernel layout: the
    non-square c_fc (8, 32) is the native kernel as it is (a `linear` transpose would be wrong)."""
    _, _, state, _, _ = cases("default", "float32")
    model = models("default", framework, "float32")
    kernel = model.transformer.h[0].mlp.c_fc.kernel
    native = kernel.numpy() if framework == "keras" else np.asarray(kernel[...])
    assert native.shape == (8, 32) and np.array_equal(native, state["transformer.h.0.mlp.c_fc.weight"])


# ---------------------------------------------------------------------------- against transformers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reproduces_transformers_logits(cases, models, variant, framework, dtype):
    """transformers' state dict, unchanged (lm_head alias included), loads; the logits match its
    eager attention with right padding in the mask, and without a mask."""
    spec, model, _, inputs, _ = cases(variant, dtype)
    assert inputs["attention_mask"][0].all() and inputs["attention_mask"][1:].min() == 0
    ours = models(variant, framework, dtype)
    for given in (inputs, {"input_ids": inputs["input_ids"]}):
        error = relative_error(parity.forward(framework, ours, given)["logits"], hf_logits(model, given))
        assert error <= tolerances.FORWARD[dtype].rtol, (sorted(given), error)


def test_activation_variants_are_different_functions(cases):
    """The variants are not one function: GELU's tanh approximation (GPT-2's gelu_new) and the
    exact GELU differ by far more than the tolerance, so passing the approximation explicitly
    matters (jax.nn.gelu and keras.ops.gelu default to tanh, torch to exact)."""
    import torch

    _, default, state, inputs, _ = cases("default", "float64")
    _, exact, _, _, _ = cases("gelu-exact", "float64")
    exact.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})  # the same weights
    assert relative_error(hf_logits(default, inputs), hf_logits(exact, inputs)) > 1e-6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_reproduces_transformers_default_sdpa_attention_on_padded_rows(transformers, cases, framework):
    """transformers' default attention ("sdpa", a bool mask) agrees with the additive fill wherever
    a row has a valid key: under right padding, every row."""
    spec, _, _, inputs, _ = cases("default", "float32")
    model = hf_model(transformers, spec, "float32", attn_implementation="sdpa")
    assert model.config._attn_implementation == "sdpa"
    ours = parity.forward(framework, parity.build(framework, spec, hf_state(model)), inputs)["logits"]
    assert relative_error(ours, hf_logits(model, inputs)) <= tolerances.FORWARD["float32"].rtol


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_fully_masked_row_attends_uniformly_like_transformers_eager(transformers, cases, models, framework):
    """The mask adds finfo(dtype).min (finite): a query whose every key is masked (a left-padded
    position; every position of an all-zero row) has all its scores equal to that minimum, so it
    attends uniformly to all T keys, future ones included, and stays finite (transformers' eager
    attention). transformers' default sdpa attention gives such a row zero weights instead: the
    two transformers differ there, and nowhere else."""
    spec, model, state, inputs, _ = cases("default", "float64")
    mask = inputs["attention_mask"].copy()
    mask[1] = [0, 0, 1, 1, 1, 1]  # left padding: positions 0 and 1 see no key
    mask[2] = 0  # nothing to attend to anywhere
    inputs = {**inputs, "attention_mask": mask}
    eager = hf_logits(model, inputs)
    ours = parity.forward(framework, models("default", framework, "float64"), inputs)["logits"]
    assert np.isfinite(ours).all()
    assert relative_error(ours, eager) <= tolerances.FORWARD["float64"].rtol
    sdpa = hf_logits(hf_model(transformers, spec, "float64", attn_implementation="sdpa"), inputs)
    differs = np.abs(sdpa - eager).max(axis=-1) > 1e-6  # (B, T)
    expected = np.zeros_like(differs)
    expected[1, :2] = expected[2] = True  # exactly the fully masked queries (later ones mask them as keys)
    assert np.array_equal(differs, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_loss_and_gradients_match_transformers(cases, models, framework, dtype):
    """The cross-entropy over every position and the gradient of every parameter, against
    transformers' loss.backward(): wte's gradient is the embedding's plus the tied head's."""
    _, model, _, inputs, targets = cases("default", dtype)
    expected_loss, expected = hf_loss_and_grads(model, inputs, targets)
    loss, grads = parity.loss_and_grads(framework, models("default", framework, dtype), inputs, targets)
    assert relative_error(loss, expected_loss) <= tolerances.FORWARD[dtype].rtol
    assert set(grads) == set(expected)
    scale = max(float(np.abs(g).max()) for g in expected.values())
    for name, grad in expected.items():
        assert relative_error(grads[name], grad, scale) <= tolerances.GRADIENT[dtype].rtol, name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_caller_shifts_the_targets_as_transformers_labels_do(cases, models, framework):
    """transformers' `labels` are shifted inside (logits at t predict labels at t + 1, the last
    position dropped); parity's targets are not. Both give one loss: ours on ids[:, :-1] against
    ids[:, 1:] (the causal mask makes the first T - 1 logits independent of the last id)."""
    import torch

    _, model, _, inputs, _ = cases("default", "float32")
    ids = inputs["input_ids"]
    expected = model(torch.from_numpy(ids), labels=torch.from_numpy(ids)).loss.item()
    loss, _ = parity.loss_and_grads(framework, models("default", framework, "float32"), {"input_ids": ids[:, :-1]},
                                    ids[:, 1:])
    assert relative_error(loss, expected) <= tolerances.FORWARD["float32"].rtol


def test_transformers_causal_lm_loss_is_float32_in_a_float64_model(cases):
    """transformers' causal-LM loss upcasts the logits with `.float()` (loss_utils.ForCausalLMLoss):
    in a float64 model that is a DOWNcast, and its loss is float32 (about 1e-8 off). The float64
    checks here take the cross-entropy of its float64 logits instead."""
    import torch

    _, model, _, inputs, targets = cases("default", "float64")
    ours = hf_loss_and_grads(model, inputs, targets)[0]
    theirs = model(**{n: torch.from_numpy(v) for n, v in inputs.items()}, labels=torch.from_numpy(targets),
                   shift_labels=torch.from_numpy(targets)).loss  # shift_labels: taken as given, not shifted
    assert theirs.dtype == torch.float32
    assert 1e-12 < relative_error(theirs.item(), ours) <= 1e-6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_mode_drops_out_and_the_deterministic_spec_does_not(cases, framework):
    """The three dropout rates (embd, attn, resid: 0.1 each in the preset) act in training mode
    only; with `deterministic()` (every rate 0) training mode computes the eval function."""
    spec, _, state, inputs, _ = cases("default", "float64")
    for rates, differs in ((spec, True), (spec.deterministic(), False)):
        model = parity.build(framework, rates, state)
        evaluated = parity.forward(framework, model, inputs)["logits"]
        trained = parity.forward(framework, model, inputs, train=True, rng=0)["logits"]
        assert np.isfinite(trained).all()
        assert (relative_error(trained, evaluated) > 1e-3) == differs


# ---------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bad_inputs_name_expected_and_given(models, cases, framework):
    spec, _, _, inputs, targets = cases("default", "float32")
    model = models("default", framework, "float32")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    too_long = np.zeros((2, spec.n_positions + 1), np.int64)
    with pytest.raises(parity.InputError, match=r"gpt2 inputs\['input_ids'\]: expected at most 16 along T "
                                                r"\(n_positions\), got 17"):
        parity.forward(framework, model, {"input_ids": too_long})
    out_of_vocabulary = ids.copy()
    out_of_vocabulary[0, 0] = spec.vocab_size
    with pytest.raises(parity.InputError, match=r"expected token ids \(the vocabulary\) in \[0, 64\), "
                                                r"got values in \[\d+, 64\]"):
        parity.forward(framework, model, {"input_ids": out_of_vocabulary})
    with pytest.raises(parity.InputError, match=r"gpt2 inputs\['attention_mask'\]: expected shape \('B', 'T'\) "
                                                r"with B=4 T=6, got \(4, 5\)"):
        parity.forward(framework, model, {"input_ids": ids, "attention_mask": mask[:, :5]})
    with pytest.raises(parity.InputError, match=r"gpt2 targets: expected shape \('B', 'T'\) with B=4 T=6, "
                                                r"got \(4, 5\)"):
        parity.loss_and_grads(framework, model, inputs, targets[:, :5])


# ---------------------------------------------------------------------------- the KV cache


def cached_logits(framework, model, input_ids, chunks, max_len):
    """input_ids fed through `model.decode` chunk by chunk (sizes `chunks`, positions consecutive
    from 0) on a cache of max_len slots; Keras' and JAX's steps compiled (XLA), with a traced
    position. -> logits (B, T, V) numpy, the number of times the step was traced"""
    batch, dtype = input_ids.shape[0], parity.frameworks.adapter(framework).dtype_of(model)
    traces = []
    if framework == "torch":
        import torch

        device = model.transformer.wte.weight.device

        def step(ids, cache, position):
            traces.append(ids.shape)
            with torch.no_grad():
                logits, cache = model.decode(torch.from_numpy(ids).to(device), cache, position)
            return logits.cpu().numpy(), cache

        to_position, scope = int, contextlib.nullcontext()
    elif framework == "keras":
        import tensorflow as tf

        def traced(ids, cache, position):
            traces.append(ids.shape)
            return model.decode(ids, cache, position)

        compiled = tf.function(traced, jit_compile=True)

        def step(ids, cache, position):
            return compiled(tf.constant(ids), cache, position)

        to_position, scope = (lambda p: tf.constant(p, tf.int32)), contextlib.nullcontext()
    else:
        import jax
        import jax.numpy as jnp
        from flax import nnx

        @nnx.jit
        def compiled(model, ids, cache, position):
            traces.append(ids.shape)
            return model.decode(ids, cache, position)

        def step(ids, cache, position):
            return compiled(model, jnp.asarray(ids), cache, position)

        to_position = lambda p: jnp.asarray(p, jnp.int32)  # noqa: E731
        scope = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
    with scope:
        cache = model.init_cache(batch, max_len)
        outputs, position = [], 0
        for size in chunks:
            logits, cache = step(input_ids[:, position:position + size], cache, to_position(position))
            outputs.append(np.asarray(logits))
            position += size
    return np.concatenate(outputs, axis=1), len(traces)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_cached_decoding_gives_the_uncached_logits(cases, models, framework, dtype):
    """A prompt of 3 ids at once, then 1, 2 and 1-id steps (10 positions) on a 16-slot cache:
    every step's logits equal the uncached forward pass over the whole sequence. Keras and JAX
    compile one step per chunk length, not per position (the position is traced, shapes static)."""
    spec, _, _, _, _ = cases("default", dtype)
    input_ids = np.random.default_rng(5).integers(0, spec.vocab_size, (3, 10))
    model = models("default", framework, dtype)
    expected = parity.forward(framework, model, {"input_ids": input_ids})["logits"]
    chunks = [3, 1, 1, 2, 1, 1, 1]
    logits, traces = cached_logits(framework, model, input_ids, chunks, spec.n_positions)
    assert logits.dtype == np.dtype(dtype)
    assert relative_error(logits, expected) <= tolerances.FORWARD[dtype].rtol
    assert traces == (len(chunks) if framework == "torch" else len(set(chunks)))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_cached_decoding_matches_transformers_cache(cases, models, framework):
    """Token by token from an empty cache, as transformers' own cached forward (DynamicCache)."""
    import torch

    spec, model, _, _, _ = cases("default", "float64")
    input_ids = np.random.default_rng(6).integers(0, spec.vocab_size, (2, 7))
    expected, past = [], None
    with torch.no_grad():
        for t in range(input_ids.shape[1]):
            out = model(torch.from_numpy(input_ids[:, t:t + 1]), cache=past, use_cache=True)
            expected.append(out.logits.numpy())
            past = out.cache
    logits, _ = cached_logits(framework, models("default", framework, "float64"), input_ids, [1] * 7, 8)
    assert relative_error(logits, np.concatenate(expected, axis=1)) <= tolerances.FORWARD["float64"].rtol
