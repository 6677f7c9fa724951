"""parity.generation: transformers' warpers reproduced in numpy, seeded sampling, and the options' errors."""
import numpy as np
import pytest

import parity
from parity import generation


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
    import torch

    spec = parity.spec("gpt2", "tiny").deterministic()
    config = transformers.GPT2Config(vocab_size=spec.vocab_size, n_positions=spec.n_positions, n_embd=spec.n_embd,
                                     n_layer=spec.n_layer, n_head=spec.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    return spec, model, {name: value.numpy().copy() for name, value in model.state_dict().items()}


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


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_t5_greedy_generation_is_transformers_generate(transformers, framework):
    """T5 decodes from decoder_start_token_id over the encoded (padded) source; without a KV cache
    (T5 has none here yet: use_cache=True is refused by name)."""
    import torch

    spec = parity.spec("t5", "tiny").deterministic()
    config = transformers.T5Config(
        vocab_size=spec.vocab_size, d_model=spec.d_model, d_kv=spec.d_kv, d_ff=spec.d_ff, num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers, num_heads=spec.num_heads,
        relative_attention_num_buckets=spec.relative_attention_num_buckets,
        relative_attention_max_distance=spec.relative_attention_max_distance, dropout_rate=0.0,
        feed_forward_proj=spec.feed_forward_proj, decoder_start_token_id=spec.decoder_start_token_id,
        pad_token_id=spec.pad_token_id, eos_token_id=1)
    torch.manual_seed(0)
    reference = transformers.T5ForConditionalGeneration(config).eval()
    state = {name: value.numpy().copy() for name, value in reference.state_dict().items()}
    source = np.random.default_rng(0).integers(2, spec.vocab_size, (2, 5))
    mask = np.ones_like(source)
    mask[1, -2:] = 0  # a padded source row
    with torch.no_grad():
        expected = reference.generate(torch.from_numpy(source), attention_mask=torch.from_numpy(mask),
                                      max_new_tokens=6, do_sample=False, eos_token_id=1, pad_token_id=0).numpy()
    model = parity.build(framework, spec, state)
    inputs = {"input_ids": source, "attention_mask": mask}
    ids = generation.generate(framework, model, inputs, max_new_tokens=6, eos_token_id=1, pad_token_id=0,
                              use_cache=False)
    np.testing.assert_array_equal(ids, expected)
    with pytest.raises(parity.InputError, match=r"t5 generate: the model has no KV cache; pass use_cache=False"):
        generation.generate(framework, model, inputs, max_new_tokens=2)
