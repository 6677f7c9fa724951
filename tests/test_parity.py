"""The claim: same weights in, same outputs, gradients and training-mode buffers out, in every
pair of frameworks, for every registered architecture."""
import itertools

import numpy as np
import pytest

import parity
from parity import tolerances

ARCHITECTURES = parity.architectures()
FRAMEWORKS = parity.FRAMEWORKS
DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_outputs_gradients_and_buffers_match(name, dtype, train):
    report = parity.compare(name, dtype=dtype, train=train)
    failing = [c for c in report.checks if not c.passed]
    assert report.passed, f"{name} {dtype}: {failing[:5]}"
    pairs = {c.pair for c in report.checks}
    assert pairs == set(itertools.combinations(FRAMEWORKS, 2))
    trainable = [n for n, p in parity.layout(parity.spec(name, "tiny")).items() if p.trainable]
    checked = {c.name for c in report.checks if c.kind == "gradient"}
    assert checked == set(trainable)  # every parameter's gradient, none skipped
    if train and any(not p.trainable for p in parity.layout(parity.spec(name, "tiny")).values()):
        assert any(c.kind == "buffer" for c in report.checks)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_reference_size_parity(name, dtype):
    report = parity.compare(name, preset=None, dtype=dtype)
    assert report.passed, [c for c in report.checks if not c.passed][:5]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_export_state_inverts_load_state_bit_exactly(name, framework, dtype):
    spec = parity.spec(name, "tiny")
    state = parity.init_state(spec, 7, dtype, random_norms=True)
    exported = parity.export_state(framework, parity.build(framework, spec, state))
    assert list(exported) == list(state)
    for key in state:
        assert exported[key].dtype == state[key].dtype and exported[key].shape == state[key].shape, key
        assert np.array_equal(exported[key], state[key]), key


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_float64_models_compute_in_float64(name, framework):
    spec = parity.spec(name, "tiny")
    model = parity.build(framework, spec, parity.init_state(spec, 0, "float64"))
    inputs, _ = parity.example_batch(spec, 2, 0, "float64")
    outputs = parity.forward(framework, model, inputs)
    assert all(v.dtype == np.float64 for v in outputs.values())


def test_training_step_updates_running_stats_like_torch():
    """Unbiased running variance, torch's momentum convention and the batch counter, computed in
    numpy from the batch and checked in all three frameworks."""
    spec = parity.spec("mlp", "tiny", hidden_sizes=(6,), activation="relu")
    state = parity.init_state(spec, 0, "float64", random_norms=True)
    inputs, _ = parity.example_batch(spec, 5, 0, "float64")
    pre_bn = inputs @ state["blocks.0.fc.weight"].T + state["blocks.0.fc.bias"]
    m = spec.bn_momentum
    expected_mean = (1 - m) * state["blocks.0.bn.running_mean"] + m * pre_bn.mean(0)
    expected_var = (1 - m) * state["blocks.0.bn.running_var"] + m * pre_bn.var(0, ddof=1)
    for framework in FRAMEWORKS:
        model = parity.build(framework, spec, state)
        parity.forward(framework, model, inputs, train=True)
        after = parity.export_state(framework, model)
        np.testing.assert_allclose(after["blocks.0.bn.running_mean"], expected_mean, rtol=1e-13, err_msg=framework)
        np.testing.assert_allclose(after["blocks.0.bn.running_var"], expected_var, rtol=1e-13, err_msg=framework)
        assert after["blocks.0.bn.num_batches_tracked"] == 1, framework
        assert np.array_equal(after["blocks.0.fc.weight"], state["blocks.0.fc.weight"])


def test_eval_mode_uses_running_stats_and_leaves_them_alone():
    spec = parity.spec("mlp", "tiny")
    state = parity.init_state(spec, 0, random_norms=True)
    inputs, _ = parity.example_batch(spec, 4)
    for framework in FRAMEWORKS:
        model = parity.build(framework, spec, state)
        single = parity.forward(framework, model, inputs[:1])["logits"]
        batched = parity.forward(framework, model, inputs)["logits"]
        np.testing.assert_allclose(single[0], batched[0], rtol=1e-5, err_msg=framework)  # no batch stats
        after = parity.export_state(framework, model)
        assert all(np.array_equal(after[k], state[k]) for k in state), framework


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dropout_keep_rate_and_inverted_scaling(framework):
    """Dropout RNG streams cannot match across frameworks; the semantics can: each unit is kept
    with probability 1 - p and scaled by 1 / (1 - p) in training, identity in eval."""
    p = 0.3
    spec = parity.spec("mlp", "tiny", hidden_sizes=(256,), activation="relu", batch_norm=False, dropout=p)
    model = parity.build(framework, spec)
    inputs, _ = parity.example_batch(spec, 64, 1)
    _, trace = parity.forward(framework, model, inputs, train=True, rng=0, trace=True)
    kept_input = np.maximum(trace["blocks.0.fc"], 0)  # the dropout's input: relu(fc)
    dropped = trace["blocks.0.drop"]
    active = kept_input > 0
    kept = dropped[active] != 0
    np.testing.assert_allclose(dropped[active][kept], kept_input[active][kept] / (1 - p), rtol=1e-6)
    n = active.sum()
    keep_rate = kept.mean()
    assert abs(keep_rate - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n), (keep_rate, n)  # 4 sigma
    _, eval_trace = parity.forward(framework, model, inputs, trace=True)
    np.testing.assert_array_equal(eval_trace["blocks.0.drop"], np.maximum(eval_trace["blocks.0.fc"], 0))


def test_train_mode_check_zeroes_dropout_and_says_so():
    report = parity.compare(parity.spec("mlp", "tiny", dropout=0.25), train=True)
    assert report.passed and report.spec["dropout"] == 0.0
    assert any("{'dropout': 0.25} set to 0" in note for note in report.notes)


def test_trace_names_the_first_divergent_module(monkeypatch):
    """A framework that gets one layer wrong is caught at that layer, not just at the output."""
    import jax_impl.api

    load = jax_impl.api.load_state

    def off_by_a_bit(model, state):
        state = dict(state, **{"blocks.1.fc.bias": state["blocks.1.fc.bias"] + 1e-3})
        return load(model, state)

    monkeypatch.setattr(jax_impl.api, "load_state", off_by_a_bit)
    report = parity.compare("mlp", trace=True, grads=False)
    assert not report.passed
    assert report.first_divergence == "blocks.1.fc"
    assert report.trace_order.index("blocks.0") < report.trace_order.index("blocks.1.fc")
    assert {c.pair for c in report.checks if not c.passed} == {("torch", "jax"), ("keras", "jax")}


def test_report_serialises_and_renders():
    import json

    report = parity.compare("perceptron", frameworks=("torch", "jax"), trace=True)
    data = json.loads(report.to_json())
    assert data["passed"] is True and data["architecture"] == "perceptron"
    assert {c["kind"] for c in data["checks"]} >= {"output", "loss", "gradient", "trace"}
    assert all(c["tolerance"] == tolerances.FORWARD["float32"].rtol for c in data["checks"] if c["kind"] == "output")
    assert report.table().row_count >= 3
