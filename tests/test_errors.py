"""Bad input gets one clear parity error naming expected vs given, and loses nothing."""
import numpy as np
import pytest

import parity

FRAMEWORKS = parity.FRAMEWORKS


@pytest.fixture(scope="module")
def lenet():
    spec = parity.spec("lenet5", "tiny")
    return spec, {f: parity.build(f, spec) for f in FRAMEWORKS}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_wrong_input_shape_names_expected_and_given(lenet, framework):
    spec, models = lenet
    channels_last = np.zeros((2, 28, 28, 1), np.float32)
    with pytest.raises(parity.InputError, match=r"expected shape \('B', 1, 28, 28\) \(B, C, H, W\), channels first, "
                                                 r"got \(2, 28, 28, 1\)"):
        parity.forward(framework, models[framework], channels_last)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_wrong_input_dtype_names_expected_and_given(lenet, framework):
    spec, models = lenet
    with pytest.raises(parity.InputError, match="expected dtype float32 \\(the model's\\), got float64"):
        parity.forward(framework, models[framework], np.zeros((2, 1, 28, 28)))


def test_non_array_and_non_finite_inputs(lenet):
    spec, models = lenet
    with pytest.raises(parity.InputError, match="expected a numpy array, got list"):
        parity.forward("torch", models["torch"], [[0.0]])
    with pytest.raises(parity.InputError, match="finite"):
        parity.forward("torch", models["torch"], np.full((1, 1, 28, 28), np.nan, np.float32))


def test_inputs_may_be_named_by_kind(lenet):
    spec, models = lenet
    inputs, _ = parity.example_batch(spec, 2)
    named = parity.forward("jax", models["jax"], {"image": inputs})["logits"]
    assert (named == parity.forward("jax", models["jax"], inputs)["logits"]).all()
    with pytest.raises(parity.InputError, match=r"expected a dict with the key 'image'.*got keys \['pixels'\]"):
        parity.forward("jax", models["jax"], {"pixels": inputs})


def test_bad_targets_name_expected_and_given(lenet):
    spec, models = lenet
    inputs, _ = parity.example_batch(spec, 3)
    with pytest.raises(parity.InputError, match=r"expected integer class indices of shape \(3,\), got float32 \(3,\)"):
        parity.loss_and_grads("keras", models["keras"], inputs, np.zeros(3, np.float32))
    with pytest.raises(parity.InputError, match=r"expected class indices in \[0, 10\), got values in \[0, 12\]"):
        parity.loss_and_grads("jax", models["jax"], inputs, np.array([0, 12, 3]))
    perceptron = parity.spec("perceptron", "tiny")
    x, _ = parity.example_batch(perceptron, 2)
    with pytest.raises(parity.InputError, match=r"expected float32 0/1 labels of shape \(2, 1\), got int64 \(2,\)"):
        parity.loss_and_grads("torch", parity.build("torch", perceptron), x, np.array([0, 1]))


def test_training_batch_norm_needs_two_examples():
    spec = parity.spec("mlp", "tiny")
    inputs, _ = parity.example_batch(spec, 1)
    with pytest.raises(parity.InputError, match="at least 2.*got B = 1"):
        parity.forward("jax", parity.build("jax", spec), inputs, train=True)


def test_unknown_framework_lists_the_valid_ones():
    with pytest.raises(parity.FrameworkError, match=r"unknown framework 'tensorflow'; expected one of \['torch', 'keras', 'jax'\]"):
        parity.build("tensorflow", parity.spec("mlp", "tiny"))


def test_build_rejects_a_name_instead_of_a_spec():
    with pytest.raises(parity.InputError, match="expected a parity spec"):
        parity.build("torch", "mlp")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bad_state_is_rejected_whole_and_the_model_is_untouched(framework):
    spec = parity.spec("mlp", "tiny")
    good = parity.init_state(spec, 0, random_norms=True)
    model = parity.build(framework, spec, good)
    bad = parity.init_state(spec, 1)
    bad["blocks.0.fc.weight"][0, 0] = np.nan
    bad["head.weight"] = bad["head.weight"][:, :3]
    del bad["blocks.1.bn.running_var"]
    bad["stray"] = np.zeros(1, np.float32)
    with pytest.raises(parity.StateError) as error:
        parity.load_model_state(framework, model, bad)
    assert len(error.value.problems) == 4
    after = parity.export_state(framework, model)
    assert all(np.array_equal(after[k], good[k]) for k in good)  # nothing half-loaded
    with pytest.raises(parity.StateError, match="missing 1 tensor"):
        parity.build(framework, spec, bad)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_state_dtype_must_match_the_model(framework):
    spec = parity.spec("perceptron", "tiny")
    model = parity.build(framework, spec)
    with pytest.raises(parity.StateError, match="the model computes in float32, the state is float64"):
        parity.load_model_state(framework, model, parity.init_state(spec, 0, "float64"))
    with pytest.raises(parity.StateError, match="build asked for float32, the state given is float64"):
        parity.build(framework, spec, parity.init_state(spec, 0, "float64"), dtype="float32")


def test_bad_float_dtype_request():
    with pytest.raises(parity.StateError, match=r"dtype: expected one of \['float32', 'float64'\], got 'float16'"):
        parity.init_state(parity.spec("mlp", "tiny"), 0, "float16")


def test_compare_needs_two_distinct_frameworks():
    with pytest.raises(parity.InputError, match="at least two distinct"):
        parity.compare("mlp", frameworks=("torch", "torch"))


def test_all_parity_errors_share_a_base_class():
    for cls in (parity.SpecError, parity.StateError, parity.CheckpointError, parity.InputError, parity.FrameworkError):
        assert issubclass(cls, parity.ParityError)
