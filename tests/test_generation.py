"""parity.generation: transformers' warpers reproduced in numpy, seeded sampling, and the options' errors."""
import numpy as np
import pytest

import parity
from parity import generation, tolerances
from parity.tolerances import relative_error

from hf_models import hf_model, hf_state


@pytest.mark.parametrize("warpers", [{"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.9},
                                     {"temperature": 1.3, "top_k": 8, "top_p": 0.8}, {"top_k": 1}, {"top_p": 0.05}])
def test_warp_is_transformers_logits_warpers(transformers, warpers):
    import torch
    from transformers.generation import logits_process as lp

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 50)) * 3
    logits[0, :3] = logits[0, 3]  # ties at the k-th largest value are kept, as transformers keeps them
    chain = lp.LogitsProcessorList(
        [lp.TemperatureLogitsWarper(warpers.get("temperature", 1.0))]
        + ([lp.TopKLogitsWarper(warpers["top_k"])] if "top_k" in warpers else [])
        + ([lp.TopPLogitsWarper(warpers["top_p"])] if "top_p" in warpers else []))
    expected = chain(torch.zeros(4, 1, dtype=torch.long), torch.from_numpy(logits)).numpy()
    ours = generation.warp(logits, **warpers)
    assert np.array_equal(np.isinf(ours), np.isinf(expected))
    np.testing.assert_allclose(ours[np.isfinite(ours)], expected[np.isfinite(expected)], rtol=1e-15)


def test_greedy_takes_the_first_maximum_and_sampling_is_seeded():
    logits = np.array([[0.0, 2.0, 2.0, 1.0], [5.0, 0.0, 0.0, 0.0]])
    assert generation.choose(logits).tolist() == [1, 0]
    draws = [generation.choose(logits, np.random.default_rng(3), top_k=3) for _ in range(2)]
    assert np.array_equal(*draws)
    # top_k=1 or a tiny top_p leave only the maximum (when it is unique): sampling is then greedy
    distinct = np.array([[0.0, 2.0, 1.5, 1.0], [5.0, 0.0, 0.1, 0.2]])
    for warpers in ({"top_k": 1}, {"top_p": 1e-6}):
        assert generation.choose(distinct, np.random.default_rng(1), **warpers).tolist() == [1, 0]


def test_sampling_follows_the_warped_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    counts = np.bincount([generation.choose(logits, rng, top_p=0.75)[0] for _ in range(4000)], minlength=4)
    # top_p=0.75 keeps {0.5, 0.3} (cumulative from below: 0.05, 0.2 <= 0.25 removed), renormalised 5/8, 3/8
    assert counts[2:].sum() == 0
    assert abs(counts[0] / 4000 - 0.625) < 0.03


@pytest.mark.parametrize("options, message", [
    ({"max_new_tokens": 0}, r"max_new_tokens: expected an int >= 1, got 0"),
    ({"max_new_tokens": 2, "temperature": 0.0}, r"temperature: expected a float > 0, got 0.0"),
    ({"max_new_tokens": 2, "top_k": -1}, r"top_k: expected an int >= 0 \(0: no top-k\), got -1"),
    ({"max_new_tokens": 2, "top_p": 1.5}, r"top_p: expected a float in \(0, 1\] \(1: no top-p\), got 1.5"),
])
def test_generation_options_are_checked(options, message):
    with pytest.raises(parity.InputError, match=message):
        generation._check_options(**{"temperature": 1.0, "top_k": 0, "top_p": 1.0, **options})


# --- generate on GPT-2 (tiny), against transformers' own generate ------------------------------

@pytest.fixture(scope="module")
def gpt2_reference(transformers):
    """A random-init transformers GPT2LMHeadModel (eval mode) and its state dict as numpy."""
    spec = parity.spec("gpt2", "tiny").deterministic()
    model = hf_model(transformers, spec, "float32")
    return spec, model, hf_state(model)


PROMPT = np.random.default_rng(5).integers(0, 64, (2, 4))


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_greedy_generation_is_transformers_generate_token_for_token(gpt2_reference, framework, use_cache):
    import torch

    spec, reference, state = gpt2_reference
    eos = 7  # a row that emits it is finished: later positions hold the pad id
    with torch.no_grad():
        expected = reference.generate(torch.from_numpy(PROMPT), attention_mask=torch.ones_like(torch.from_numpy(PROMPT)),
                                      max_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=0).numpy()
    model = parity.build(framework, spec, state)  # transformers' state dict, lm_head alias included
    ids = generation.generate(framework, model, {"input_ids": PROMPT}, max_new_tokens=10, eos_token_id=eos,
                              pad_token_id=0, use_cache=use_cache)
    np.testing.assert_array_equal(ids, expected)


def test_sampling_is_the_same_text_in_every_framework(gpt2_reference):
    spec, _, state = gpt2_reference
    samples = [generation.generate(framework, parity.build(framework, spec, state), {"input_ids": PROMPT},
                                   max_new_tokens=10, do_sample=True, seed=3, top_k=20, top_p=0.9, temperature=0.8)
               for framework in parity.FRAMEWORKS]
    assert all(np.array_equal(samples[0], other) for other in samples[1:])
    again = generation.generate("torch", parity.build("torch", spec, state), {"input_ids": PROMPT}, max_new_tokens=10,
                                do_sample=True, seed=4, top_k=20, top_p=0.9, temperature=0.8)
    assert not np.array_equal(samples[0], again)  # another seed draws another text


def test_compiled_cached_steps_compile_once_not_once_per_token(gpt2_reference):
    """JAX (nnx.jit) and Keras (tf.function(jit_compile=True)) compile the cached step once for
    the prompt's length and once for every later one-id step, however many tokens follow."""
    from jax_impl import api as jax_api

    spec, _, state = gpt2_reference
    before = len(jax_api.DECODE_TRACES)
    model = parity.build("jax", spec, state)
    generation.generate("jax", model, {"input_ids": PROMPT[:, :3]}, max_new_tokens=9)
    assert jax_api.DECODE_TRACES[before:] == [(2, 3), (2, 1)]
    keras_next = parity.frameworks.adapter("keras").generator(parity.build("keras", spec, state), {}, "input_ids", 2,
                                                              12, True)
    ids = PROMPT[:, :3]
    for _ in range(9):
        ids = np.concatenate([ids, generation.choose(keras_next(ids))[:, None]], axis=1)
    assert keras_next.tracing_count() == 2


def test_generation_refuses_padded_prompts_and_overlong_requests(gpt2_reference):
    spec, _, state = gpt2_reference
    model = parity.build("torch", spec, state)
    mask = np.ones_like(PROMPT)
    mask[1, -1] = 0
    with pytest.raises(parity.InputError, match=r"expected an attention_mask of ones .* got 1 padded position"):
        generation.generate("torch", model, {"input_ids": PROMPT, "attention_mask": mask}, max_new_tokens=2)
    with pytest.raises(parity.InputError, match=r"expected prompt \+ max_new_tokens <= 16 \(n_positions\), got 4 \+ 13"):
        generation.generate("torch", model, {"input_ids": PROMPT}, max_new_tokens=13)


# --- generate on T5 (tiny, tiny-v1.1), cached and uncached, against transformers' generate -----

T5_PRESETS = ["tiny", "tiny-v1.1"]
SOURCE = np.random.default_rng(0).integers(2, 64, (2, 5))
SOURCE_MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # a padded source row


@pytest.fixture(scope="module")
def t5_reference(transformers):
    """Per preset: (spec, a random-init transformers T5ForConditionalGeneration (eager, eval), its
    state dict as numpy); an untied preset's head is its own (hf_models.hf_model)."""
    built = {}

    def get(preset):
        if preset not in built:
            spec = parity.spec("t5", preset).deterministic()
            model = hf_model(transformers, spec, "float32")
            built[preset] = spec, model, hf_state(model)
        return built[preset]

    return get


@pytest.mark.parametrize("preset", T5_PRESETS)
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_t5_greedy_generation_is_transformers_generate(t5_reference, framework, preset):
    """T5 decodes from decoder_start_token_id over the encoded (padded) source: with the KV cache
    (the encoder run once, its keys and values cached) and without, token for token transformers'
    generate."""
    import torch

    spec, reference, state = t5_reference(preset)
    # transformers' own cache sizes its layers by num_layers (the encoder's): with 3 decoder blocks
    # over 2 (tiny-v1.1) its cached generate fails (IndexError in cache_utils); uncached it runs.
    hf_cache = spec.decoder_layers == spec.num_layers
    with torch.no_grad():
        expected = reference.generate(torch.from_numpy(SOURCE), attention_mask=torch.from_numpy(SOURCE_MASK),
                                      max_new_tokens=8, do_sample=False, eos_token_id=1, pad_token_id=0,
                                      use_cache=hf_cache).numpy()
    model = parity.build(framework, spec, state)
    inputs = {"input_ids": SOURCE, "attention_mask": SOURCE_MASK}
    for use_cache in (True, False):
        ids = generation.generate(framework, model, inputs, max_new_tokens=8, eos_token_id=1, pad_token_id=0,
                                  use_cache=use_cache)
        np.testing.assert_array_equal(ids, expected, err_msg=f"use_cache={use_cache}")


def t5_encoder_inputs(spec, dtype, decoder_ids):
    """The padded SOURCE as generate hands it to the adapter's generator: validated (with the
    decoder's ids, which it then drops)."""
    inputs = parity.frameworks._check_inputs(spec, dtype, {"input_ids": SOURCE, "attention_mask": SOURCE_MASK,
                                                           "decoder_input_ids": decoder_ids})
    return {name: value for name, value in inputs.items() if name in ("input_ids", "attention_mask")}


def t5_step_logits(framework, model, decoder_ids, use_cache, prefix=3):
    """The adapter's next_logits over the padded SOURCE, fed decoder_ids[:, :prefix] at once, then one
    more id per step. -> (B, steps, V) numpy: the last position's logits of every step"""
    api = parity.frameworks.adapter(framework)
    kept = t5_encoder_inputs(model.spec, api.dtype_of(model), decoder_ids)
    next_logits = api.generator(model, kept, "decoder_input_ids", len(SOURCE), decoder_ids.shape[1], use_cache)
    return np.stack([next_logits(decoder_ids[:, :t]) for t in range(prefix, decoder_ids.shape[1] + 1)], axis=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("preset", T5_PRESETS)
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_t5_cached_decoding_gives_the_uncached_logits(t5_reference, framework, preset, dtype):
    """A 3-id decoder prefix at once, then 1-id steps (9 positions, 9 cache slots; Keras and JAX
    compiled): every step's logits are the uncached forward pass's, within the forward tolerance
    of the dtype (float64: 1e-12)."""
    spec, _, state = t5_reference(preset)
    model = parity.build(framework, spec, {name: value.astype(dtype) for name, value in state.items()})
    decoder_ids = np.random.default_rng(1).integers(0, spec.vocab_size, (2, 9))
    decoder_ids[:, 0] = spec.decoder_start_token_id
    cached = t5_step_logits(framework, model, decoder_ids, True)
    uncached = t5_step_logits(framework, model, decoder_ids, False)
    assert cached.dtype == np.dtype(dtype) and cached.shape == (2, 7, spec.vocab_size)
    assert relative_error(cached, uncached) <= tolerances.FORWARD[dtype].rtol


def test_t5_cached_sampling_is_the_same_text_in_every_framework(t5_reference):
    spec, _, state = t5_reference("tiny")
    inputs = {"input_ids": SOURCE, "attention_mask": SOURCE_MASK}
    options = {"max_new_tokens": 10, "do_sample": True, "seed": 3, "top_k": 20, "top_p": 0.9, "temperature": 0.8}
    samples = [generation.generate(framework, parity.build(framework, spec, state), inputs, use_cache=True, **options)
               for framework in parity.FRAMEWORKS]
    assert all(np.array_equal(samples[0], other) for other in samples[1:])
    uncached = generation.generate("torch", parity.build("torch", spec, state), inputs, use_cache=False, **options)
    np.testing.assert_array_equal(samples[0], uncached)


def test_t5_compiled_cached_steps_compile_once_not_once_per_token(t5_reference):
    """JAX (nnx.jit) and Keras (tf.function(jit_compile=True)) compile T5's cached step once per fed
    length: generate's decoder prompt is the start id alone, so 12 tokens are one program; a 3-id
    decoder prefix and 9 one-id steps are two. (Cache sizes no other test here uses: JAX keeps
    programs across models of one structure, so an earlier test's shapes would not be traced again.)"""
    from jax_impl import api as jax_api

    spec, _, state = t5_reference("tiny")
    model = parity.build("jax", spec, state)
    before = len(jax_api.DECODE_TRACES)
    generation.generate("jax", model, {"input_ids": SOURCE, "attention_mask": SOURCE_MASK}, max_new_tokens=12)
    assert jax_api.DECODE_TRACES[before:] == [(2, 1)]
    decoder_ids = np.random.default_rng(2).integers(0, spec.vocab_size, (2, 12))
    before = len(jax_api.DECODE_TRACES)
    t5_step_logits("jax", model, decoder_ids, True)
    assert jax_api.DECODE_TRACES[before:] == [(2, 3), (2, 1)]
    keras_model = parity.build("keras", spec, state)
    api = parity.frameworks.adapter("keras")
    kept = t5_encoder_inputs(spec, "float32", decoder_ids)
    keras_next = api.generator(keras_model, kept, "decoder_input_ids", 2, 12, True)
    for t in range(3, 13):
        keras_next(decoder_ids[:, :t])
    assert keras_next.tracing_count() == 2
