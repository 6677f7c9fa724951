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
