"""Training checkpoints hold model *and* optimizer state in canonical form: resuming is exact
within a framework and crosses frameworks (train in torch, continue in JAX, ...)."""
import itertools

import numpy as np
import pytest

import parity
from parity import tolerances
from parity.optimizers import TRAJECTORY
from parity.training import load_checkpoint, save_checkpoint, train_steps

SPEC = parity.spec("mlp", "tiny", dropout=0.0)
# A Linear feeding batch norm has a bias whose true gradient is 0: Adam turns its rounding noise
# into lr-sized steps that differ per framework (docs/optimizers.md), so Adam runs without BN.
NO_BN = parity.spec("mlp", "tiny", dropout=0.0, batch_norm=False)
OPTIMIZERS = {
    "sgd_momentum": parity.optimizer("sgd", lr=0.1, momentum=0.9),
    "adam": parity.optimizer("adam", lr=1e-2),
    "adamw": parity.optimizer("adamw", lr=1e-2, weight_decay=0.1),
    "adagrad": parity.optimizer("adagrad", lr=1e-2, initial_accumulator_value=0.1),
    "rmsprop_centered_momentum": parity.optimizer("rmsprop", lr=1e-3, momentum=0.9, centered=True),
    "sgd_momentum_step": parity.optimizer("sgd", lr=0.1, momentum=0.9, schedule="step", step_size=2, gamma=0.5),
    "adam_cosine": parity.optimizer("adam", lr=1e-2, schedule="cosine", total_steps=6),
    "adagrad_warmup": parity.optimizer("adagrad", lr=1e-2, schedule="linear_warmup", warmup_steps=4),
}


def _batches(dtype, n=6):
    return [parity.example_batch(SPEC, 8, 100 + i, dtype) for i in range(n)]


def _worst(a, b):
    return max(tolerances.errors(a[k], b[k], max(np.abs(b[k]).max(), 1e-30))[1] for k in a)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
def test_resume_through_a_checkpoint_equals_training_straight(framework, name, tmp_path):
    optimizer, batches = OPTIMIZERS[name], _batches("float64")
    state = parity.init_state(SPEC, 0, "float64", random_norms=True)
    straight, straight_opt = train_steps(framework, SPEC, state, optimizer, batches)
    half, half_opt = train_steps(framework, SPEC, state, optimizer, batches[:3])
    path = save_checkpoint(tmp_path / "ckpt.safetensors", SPEC, optimizer, half, half_opt)
    spec, stored_optimizer, loaded, loaded_opt = load_checkpoint(path, SPEC, optimizer)
    assert spec == SPEC and stored_optimizer == optimizer
    resumed, resumed_opt = train_steps(framework, SPEC, loaded, optimizer, batches[3:], loaded_opt)
    if framework == "keras" and name.startswith("sgd_momentum"):
        # Keras' velocity is -lr * b: converting to torch's b and back costs up to an ulp.
        assert _worst(resumed, straight) < 1e-14
    else:
        for key in straight:
            assert np.array_equal(resumed[key], straight[key]), key
        for key in straight_opt:
            assert np.array_equal(resumed_opt[key], straight_opt[key]), key


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("first, second", list(itertools.permutations(parity.FRAMEWORKS, 2)))
def test_resume_in_another_framework(first, second, name):
    optimizer, batches = OPTIMIZERS[name], _batches("float64")
    spec = SPEC if name.startswith("sgd") else NO_BN
    state = parity.init_state(spec, 0, "float64", random_norms=True)
    straight, _ = train_steps(second, spec, state, optimizer, batches)
    half, half_opt = train_steps(first, spec, state, optimizer, batches[:3])
    resumed, _ = train_steps(second, spec, half, optimizer, batches[3:], half_opt)
    assert _worst(resumed, straight) <= TRAJECTORY["float64"].rtol


def test_a_checkpoint_for_another_spec_or_optimizer_is_refused(tmp_path):
    optimizer = OPTIMIZERS["adam"]
    state, opt_state = train_steps("torch", SPEC, parity.init_state(SPEC, 0), optimizer, _batches("float32", 1))
    path = save_checkpoint(tmp_path / "c.safetensors", SPEC, optimizer, state, opt_state)
    with pytest.raises(parity.CheckpointError, match="was made for model spec"):
        load_checkpoint(path, parity.spec("mlp", "tiny", dropout=0.0, num_classes=3))
    with pytest.raises(parity.CheckpointError, match="was made for optimizer"):
        load_checkpoint(path, optimizer=parity.optimizer("adam", lr=0.5))
    plain = parity.save_state(tmp_path / "plain.safetensors", state, SPEC)
    with pytest.raises(parity.CheckpointError, match="expected a training checkpoint"):
        load_checkpoint(plain)


def test_bad_optimizer_state_is_reported_whole():
    optimizer = OPTIMIZERS["sgd_momentum"]
    state = parity.init_state(SPEC, 0)
    _, opt_state = train_steps("jax", SPEC, state, optimizer, _batches("float32", 1))
    del opt_state["optimizer.head.bias.momentum_buffer"]
    opt_state["optimizer.head.weight.momentum_buffer"] = np.full((5, 24), np.nan, np.float32)
    with pytest.raises(parity.StateError, match=r"(?s)sgd optimizer state has 2 problem.*missing.*NaN"):
        train_steps("torch", SPEC, state, optimizer, _batches("float32", 1), opt_state)


def test_a_schedule_position_is_the_step_count():
    layout = parity.optimizers.state_layout(OPTIMIZERS["sgd_momentum_step"], SPEC)
    assert "optimizer.step" in layout  # plain SGD keeps no count; its schedule needs one
    assert "optimizer.step" not in parity.optimizers.state_layout(OPTIMIZERS["sgd_momentum"], SPEC)
