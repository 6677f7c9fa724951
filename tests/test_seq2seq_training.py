"""Training seq2seq_bahdanau on digit reversal in every framework from one canonical state
(a reduced benchmarks/seq2seq_reversal.py, through the same parity.reversal functions): each
reaches 95% held-out greedy exact match, the loss curves agree over the first steps, and one
trained state decodes to the same ids in every framework."""
import numpy as np
import pytest

import parity
from parity import reversal
from parity.decoding import digit_reversal

pytestmark = pytest.mark.slow

TASK = {"min_len": 3, "max_len": 6}


@pytest.fixture(scope="module")
def trained():
    parity.set_deterministic()
    spec = reversal.reversal_spec("seq2seq_bahdanau", max_len=TASK["max_len"], embedding_dim=32, hidden_size=64,
                                  attention_size=32)
    state = parity.init_state(spec, 0)
    batches = reversal.training_batches(600, 64, seed=1, **TASK)
    held_out = digit_reversal(200, seed=2, **TASK)
    optimizer = parity.optimizer("adam", lr=3e-3, clip_norm=1.0)
    runs = {framework: reversal.train_until(framework, spec, state, optimizer, batches, held_out, eval_every=50)
            for framework in parity.FRAMEWORKS}
    return spec, held_out, runs


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_every_framework_learns_to_reverse(trained, framework):
    _, held_out, runs = trained
    exact, _ = reversal.evaluate(framework, runs[framework].model, held_out)
    assert exact >= 0.95, runs[framework].evaluations


def test_loss_curves_agree_over_the_first_steps(trained):
    _, _, runs = trained
    curves = [runs[f].losses for f in parity.FRAMEWORKS]
    assert reversal.max_relative_difference(curves, 10) < 1e-4


def test_one_trained_state_decodes_identically_in_every_framework(trained):
    spec, held_out, runs = trained
    state = runs["torch"].state
    greedy = [reversal.evaluate(f, parity.build(f, spec, state), held_out)[1] for f in parity.FRAMEWORKS]
    assert reversal.identical_fraction(greedy) == 1.0
    for result in greedy[1:]:
        np.testing.assert_allclose(result.scores, greedy[0].scores, rtol=1e-4, atol=1e-4)
