"""parity.causal_lm, the reduced benchmarks/gpt_text.py: a character-level GPT over the shipped
text, its window stream, training from one state in every framework (the loss curves agree step
by step and fall), and completions through parity.generation (one state: the same greedy and
seeded sampled text in every framework)."""
import numpy as np
import pytest

import parity
from parity import causal_lm
from parity.text import Vocabulary, load_text

SIZES = {"seq_len": 32, "n_embd": 16, "n_layer": 1, "n_head": 2}
STEPS = 8
# Relative loss difference over the steps: float32 rounding through AdamW's early steps (the
# benchmark's 600-step run measures its first 10 steps in benchmarks/results/.../gpt-text.json).
LOSS_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def runs():
    parity.set_deterministic()
    text = load_text()
    vocabulary = Vocabulary.from_text(text)
    spec = causal_lm.char_gpt_spec(vocabulary, **SIZES)
    optimizer = parity.optimizer("adamw", lr=3e-3, weight_decay=0.1, clip_norm=1.0, schedule="warmup_cosine",
                                 warmup_steps=2, total_steps=STEPS)
    batches = causal_lm.text_batches(vocabulary.encode(text), STEPS, 4, spec.seq_len, seed=1)
    state = parity.init_state(spec, 0)
    return vocabulary, spec, {f: causal_lm.train(f, spec, state, optimizer, batches) for f in parity.FRAMEWORKS}


def test_char_gpt_spec_is_a_deterministic_gpt2_over_the_characters():
    vocabulary = Vocabulary.from_text(load_text())
    spec = causal_lm.char_gpt_spec(vocabulary, **SIZES)
    assert spec.architecture == "gpt2" and spec.vocab_size == vocabulary.size
    assert spec.n_positions == spec.seq_len == 32
    assert all(getattr(spec, name) == 0 for name in spec.stochastic_fields)
    assert causal_lm.char_gpt_spec(vocabulary, **SIZES, n_positions=64).n_positions == 64


def test_text_batches_are_seeded_windows_shifted_by_one():
    ids = np.arange(100, dtype=np.int64) * 3
    batches = causal_lm.text_batches(ids, 3, 5, 8, seed=4)
    assert len(batches) == 3
    for inputs, targets in batches:
        assert inputs["input_ids"].shape == targets.shape == (5, 8)
        np.testing.assert_array_equal(inputs["input_ids"][:, 1:], targets[:, :-1])
        assert np.all(np.diff(inputs["input_ids"], axis=1) == 3)  # contiguous windows of the stream
    again = causal_lm.text_batches(ids, 3, 5, 8, seed=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))
    with pytest.raises(parity.InputError, match=r"text_batches: expected a 1-d id stream longer than "
                                                r"seq_len \+ 1 = 9, got shape \(9,\)"):
        causal_lm.text_batches(ids[:9], 1, 1, 8, seed=0)


def test_training_agrees_step_by_step_and_learns(runs):
    _, _, trained = runs
    curves = [trained[f].losses for f in parity.FRAMEWORKS]
    assert all(len(curve) == STEPS and curve[-1] < curve[0] for curve in curves), curves
    reference = np.asarray(curves[0])
    for curve in curves[1:]:
        assert np.max(np.abs(np.asarray(curve) - reference) / reference) < LOSS_TOLERANCE


def test_one_state_completes_the_same_text_in_every_framework(runs):
    vocabulary, spec, trained = runs
    state = trained["torch"].state
    texts = {}
    for framework in parity.FRAMEWORKS:
        model = parity.build(framework, spec, state)
        texts[framework] = (causal_lm.complete(framework, model, vocabulary, "ROMEO:\n", 12),
                            causal_lm.complete(framework, model, vocabulary, "ROMEO:\n", 12, do_sample=True, seed=2,
                                               top_k=10))
    assert len(set(texts.values())) == 1, texts
    greedy, sampled = texts["torch"]
    assert len(greedy) == len(sampled) == 12 and set(greedy + sampled) <= set(vocabulary.chars)
