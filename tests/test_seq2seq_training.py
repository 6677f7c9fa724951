"""Training encoder-decoders on digit reversal in every framework from one canonical state (a
reduced benchmarks/seq2seq_reversal.py, through the same parity.reversal functions):
seq2seq_bahdanau and the Transformer. Slow: each reaches 95% held-out greedy exact match, the loss
curves agree over the first steps, and one trained state decodes to the same ids in every
framework. Default run: the Transformer's first steps agree step by step in every framework."""
import numpy as np
import pytest

import parity
from parity import reversal
from parity.decoding import digit_reversal

TASK = {"min_len": 3, "max_len": 6}
SIZES = {"seq2seq_bahdanau": {"embedding_dim": 32, "hidden_size": 64, "attention_size": 32},
         # dropout 0: the frameworks draw different dropout masks
         "transformer": {"d_model": 32, "nhead": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
                         "dim_feedforward": 64, "dropout": 0.0}}
LEARNING_RATE = {"seq2seq_bahdanau": 3e-3, "transformer": 1e-3}
# Relative loss difference over the first 10 steps: float32 rounding grown by Adam's early,
# nearly sign-like steps (measured 1.2e-6 for the Transformer; 9e-4 by step 100, as runs drift).
LOSS_TOLERANCE = 1e-4


def _setup(architecture, steps):
    spec = reversal.reversal_spec(architecture, max_len=TASK["max_len"], **SIZES[architecture])
    batches = reversal.training_batches(steps, 64, seed=1, **TASK)
    optimizer = parity.optimizer("adam", lr=LEARNING_RATE[architecture], clip_norm=1.0)
    return spec, parity.init_state(spec, 0), batches, optimizer


@pytest.fixture(scope="module", params=list(SIZES))
def trained(request):
    parity.set_deterministic()
    spec, state, batches, optimizer = _setup(request.param, 600)
    held_out = digit_reversal(200, seed=2, **TASK)
    runs = {framework: reversal.train_until(framework, spec, state, optimizer, batches, held_out, eval_every=50)
            for framework in parity.FRAMEWORKS}
    return spec, held_out, runs


def test_transformer_first_steps_agree_in_every_framework():
    """Ten Adam steps of the Transformer from one state: the losses agree step by step and every
    framework's loss falls (not a run that stands still in every framework alike)."""
    parity.set_deterministic()
    spec, state, batches, optimizer = _setup("transformer", 10)
    held_out = digit_reversal(8, seed=2, **TASK)
    curves = [reversal.train_until(framework, spec, state, optimizer, batches, held_out, eval_every=10).losses
              for framework in parity.FRAMEWORKS]
    assert all(len(curve) == 10 and curve[-1] < 0.9 * curve[0] for curve in curves), curves
    assert reversal.max_relative_difference(curves, 10) < LOSS_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_every_framework_learns_to_reverse(trained, framework):
    _, held_out, runs = trained
    exact, _ = reversal.evaluate(framework, runs[framework].model, held_out)
    assert exact >= 0.95, runs[framework].evaluations


@pytest.mark.slow
def test_loss_curves_agree_over_the_first_steps(trained):
    _, _, runs = trained
    curves = [runs[f].losses for f in parity.FRAMEWORKS]
    assert reversal.max_relative_difference(curves, 10) < LOSS_TOLERANCE


@pytest.mark.slow
def test_one_trained_state_decodes_identically_in_every_framework(trained):
    spec, held_out, runs = trained
    state = runs["torch"].state
    greedy = [reversal.evaluate(f, parity.build(f, spec, state), held_out)[1] for f in parity.FRAMEWORKS]
    assert reversal.identical_fraction(greedy) == 1.0
    for result in greedy[1:]:
        np.testing.assert_allclose(result.scores, greedy[0].scores, rtol=1e-4, atol=1e-4)


def test_reversal_spec_names_the_architectures_it_takes():
    with pytest.raises(parity.InputError, match=r"reversal_spec: expected architecture 'seq2seq_bahdanau', "
                                                r"'seq2seq_luong' or 'transformer', got 'gpt2'"):
        reversal.reversal_spec("gpt2", max_len=4)
    spec = reversal.reversal_spec("transformer", max_len=4)
    assert (spec.source_len, spec.target_len, spec.max_len) == (4, 5, 5)
