"""Language-model training steps in all three frameworks from one state: BERT's masked-LM step and
GPT-2's causal-LM step, AdamW under transformers' warmup + cosine schedule, 10 steps, parameters
compared after every step (and against the numpy reference rule on torch's gradients)."""
import itertools

import numpy as np
import pytest

import parity
from parity import tolerances
from parity.optimizers import ADAPTIVE_FLOAT32, TRAJECTORY
from parity.training import reference_trajectory, train_trajectory

STEPS = 10
SOURCES = ("reference", *parity.FRAMEWORKS)
# BERT's and GPT-2's recipe, shortened: AdamW, weight decay 0.01, 3 warmup steps, cosine to step 10.
RECIPE = parity.optimizer("adamw", lr=1e-3, weight_decay=0.01, schedule="warmup_cosine", warmup_steps=3,
                          total_steps=STEPS, clip_norm=1.0)
MODELS = {"bert_mlm": ("bert", "tiny-mlm"), "gpt2_causal": ("gpt2", "tiny")}


# BERT's key bias has no gradient: it adds q . b_k to every score of a query row, a constant the
# softmax removes. Its computed gradient is rounding noise (~1e-17 in float64), which Adam divides by
# its own square root and turns into lr-sized steps that differ between frameworks (0.8 relative
# after 9 steps): the one tensor not compared step by step (test_bert_key_bias_gradient_is_rounding_noise).
NO_GRADIENT = ".attention.self.key.bias"


def _worst(first, second):
    return max((tolerances.errors(a[key], b[key])[1], f"{key} after step {step + 1}")
               for step, (a, b) in enumerate(zip(first, second)) for key in a if not key.endswith(NO_GRADIENT))


@pytest.fixture(scope="module")
def runs():
    cache = {}

    def get(model, dtype):
        if (model, dtype) not in cache:
            name, preset = MODELS[model]
            spec = parity.spec(name, preset).deterministic()
            state = parity.init_state(spec, 0)
            batches = [parity.example_batch(spec, 4, seed) for seed in range(STEPS)]
            cache[model, dtype] = {"reference": reference_trajectory(spec, state, RECIPE, batches, dtype=dtype),
                                   **{fw: train_trajectory(fw, spec, state, RECIPE, batches, dtype=dtype)
                                      for fw in parity.FRAMEWORKS}}
        return cache[model, dtype]
    return get


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
def test_ten_adamw_warmup_cosine_steps_agree_everywhere(runs, model, dtype):
    """Masked LM: targets are -100 off the masked positions (masked_cross_entropy skips them).
    float32 uses the adaptive-optimizer tolerance (parity/optimizers.py: Adam turns float32
    rounding noise of near-zero gradient entries into lr-sized steps); float64 checks the rule."""
    trajectories = runs(model, dtype)
    if model == "bert_mlm":
        spec = parity.spec(*MODELS[model])
        targets = parity.example_batch(spec, 4, 0)[1]
        assert (targets == -100).any() and (targets >= 0).any() and spec.loss == "masked_cross_entropy"
    tolerance = ADAPTIVE_FLOAT32.rtol if dtype == "float32" else TRAJECTORY["float64"].rtol
    for a, b in itertools.combinations(SOURCES, 2):
        assert len(trajectories[a]) == len(trajectories[b]) == STEPS
        error, where = _worst(trajectories[a], trajectories[b])
        assert error <= tolerance, f"{model} {dtype} {a} vs {b}: {error:.2e} at {where}"
    moved = max(np.abs(trajectories["torch"][-1][k] - parity.init_state(parity.spec(*MODELS[model]), 0)[k]).max()
                for k in trajectories["torch"][-1])
    assert moved > 1e-4  # the steps did something (the schedule's first step has lr 0)


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_bert_key_bias_gradient_is_rounding_noise(framework):
    spec = parity.spec(*MODELS["bert_mlm"])
    model = parity.build(framework, spec, parity.init_state(spec, 0, "float64"))
    inputs, targets = parity.example_batch(spec, 4, 0, "float64")
    _, grads = parity.loss_and_grads(framework, model, inputs, targets)
    largest = max(np.abs(g).max() for g in grads.values())
    for name, grad in grads.items():
        if name.endswith(NO_GRADIENT):
            assert np.abs(grad).max() <= 1e-12 * largest, name
