"""Transfer learning: a trained state with a new head, its backbone frozen natively in each
framework (torch requires_grad_, Keras trainable, an optax mask). Proven here: frozen parameters
stay bit-identical, the fine-tuning trajectory matches across frameworks, batch norm in a frozen
backbone follows its policy in all three (and each framework's own default without one), and
checkpoints come in through torch.load(weights_only=True) only."""
import functools
import itertools
import json

import numpy as np
import pytest
import torch

import parity
from parity import tolerances
from parity.cli import main
from parity.data import load_dataset
from parity.errors import CheckpointError, InputError, StateError
from parity.frameworks import impl_module
from parity.loops import train
from parity.optimizers import TRAJECTORY
from parity.training import train_trajectory
from parity.transfer import check_frozen

FRAMEWORKS = parity.FRAMEWORKS
PAIRS = list(itertools.combinations(FRAMEWORKS, 2))
STEPS = 4
NEW_CLASSES = 3
# Coupled weight decay adds wd * p to every gradient it is given: a frozen parameter that reached
# the optimizer would move even with a zero gradient.
SGD = parity.optimizer("sgd", lr=0.05, momentum=0.9, weight_decay=0.01)
ADAMW = parity.optimizer("adamw", lr=0.01, weight_decay=0.1)  # decoupled: p -= lr * wd * p, gradient or not


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich wraps table cells to the terminal width


def pretrained(architecture):
    """A stand-in for a trained checkpoint: random weights and random batch-norm statistics (with
    init_state's 0/1 statistics, normalising by running or by batch statistics look alike)."""
    spec = parity.spec(architecture, "tiny")
    return spec, parity.init_state(spec, seed=1, random_norms=True)


def norm_buffers(spec):
    return [name for name, param in parity.layout(spec).items() if param.init in ("norm_mean", "norm_var")
            or name.endswith("num_batches_tracked")]


def same_bits(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def natively_frozen(framework, fine):
    """A model of the transfer with its backbone frozen the way parity's training freezes it."""
    return impl_module(framework, "transfer").freeze(parity.build(framework, fine.spec, fine.state),
                                                     *check_frozen(fine.spec, fine.frozen, fine.batch_norm))


@functools.cache
def fine_tuned(architecture, batch_norm, dtype, optimizer=SGD):
    """The transfer and each framework's trajectory of STEPS steps from it."""
    spec, state = pretrained(architecture)
    fine = parity.transfer(spec, state, NEW_CLASSES, batch_norm=batch_norm)
    batches = [parity.example_batch(fine.spec, 8, seed) for seed in range(STEPS)]
    return fine, {framework: train_trajectory(framework, fine.spec, fine.state, optimizer, batches, dtype=dtype,
                                              frozen=fine.frozen, batch_norm=batch_norm)
                  for framework in FRAMEWORKS}


def _cases():
    for architecture, batch_norm, dtype in itertools.product(("mlp", "resnet18"), ("frozen", "train"),
                                                             ("float32", "float64")):
        slow = architecture == "resnet18" and dtype == "float64"
        yield pytest.param(architecture, batch_norm, dtype, marks=[pytest.mark.slow] if slow else [],
                           id=f"{architecture}-{batch_norm}-{dtype}")


# --- the proof: frozen bits, equal trajectories, batch-norm policy ---------------------------------

@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("batch_norm", ("frozen", "train"))
@pytest.mark.parametrize("architecture", ("mlp", "resnet18"))
def test_frozen_parameters_stay_bit_identical(architecture, batch_norm, framework):
    fine, runs = fine_tuned(architecture, batch_norm, "float32")
    head = [name for name in fine.state if name.startswith(fine.spec.classifier + ".")]
    assert fine.frozen and not set(head) & set(fine.frozen)
    for step, state in enumerate(runs[framework], 1):
        moved = [name for name in fine.frozen if not same_bits(state[name], fine.state[name])]
        assert not moved, f"{framework}: frozen {moved} changed at step {step}"
    assert all(not np.array_equal(runs[framework][-1][name], fine.state[name]) for name in head)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_decoupled_weight_decay_never_reaches_frozen_parameters(framework):
    fine, runs = fine_tuned("mlp", "frozen", "float32", ADAMW)
    assert all(same_bits(runs[framework][-1][name], fine.state[name]) for name in fine.frozen)


@pytest.mark.parametrize("pair", PAIRS, ids="-".join)
@pytest.mark.parametrize("architecture, batch_norm, dtype", _cases())
def test_the_fine_tuning_trajectory_matches_across_frameworks(architecture, batch_norm, dtype, pair):
    _, runs = fine_tuned(architecture, batch_norm, dtype)
    first, second = runs[pair[0]], runs[pair[1]]
    error, where = max((tolerances.errors(a[name], b[name])[1], f"{name} after step {step}")
                       for step, (a, b) in enumerate(zip(first, second), 1) for name in a)
    assert error <= TRAJECTORY[dtype].rtol, f"{architecture} {batch_norm} {dtype} {pair}: {error:.2e} at {where}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("architecture", ("mlp", "resnet18"))
def test_a_frozen_batch_norm_uses_and_keeps_its_running_statistics(architecture, framework):
    fine, runs = fine_tuned(architecture, "frozen", "float32")
    for step, state in enumerate(runs[framework], 1):
        moved = [name for name in norm_buffers(fine.spec) if not same_bits(state[name], fine.state[name])]
        assert not moved, f"{framework}: {moved} changed at step {step}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("architecture", ("mlp", "resnet18"))
def test_a_training_batch_norm_updates_its_running_statistics(architecture, framework):
    fine, runs = fine_tuned(architecture, "train", "float32")
    final = runs[framework][-1]
    for name in norm_buffers(fine.spec):
        if name.endswith("num_batches_tracked"):
            assert int(final[name]) == int(fine.state[name]) + STEPS, name
        else:
            assert not np.array_equal(final[name], fine.state[name]), name


# --- the native defaults differ (the pitfall) -------------------------------------------------------

# What a frozen backbone's batch norm does in training mode when frozen each framework's usual way.
NATIVE_DEFAULT = {"torch": "train", "keras": "frozen", "jax": "train"}


def _freeze_the_usual_way(framework, model):
    """The one-liner each framework's transfer-learning guide shows, nothing more."""
    if framework == "torch":
        for param in model.blocks.parameters():
            param.requires_grad_(False)
    elif framework == "keras":
        for block in model.blocks:
            block.trainable = False
    # jax: optax's mask lives in the optimizer; the model itself is untouched.


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_usual_freezing_leaves_batch_norm_training_in_torch_and_jax_but_not_in_keras(framework):
    spec, state = pretrained("mlp")
    model = parity.build(framework, spec, state)
    _freeze_the_usual_way(framework, model)
    parity.forward(framework, model, parity.example_batch(spec, 8)[0], train=True)
    after = parity.export_state(framework, model)
    moved = {name for name in norm_buffers(spec) if not same_bits(after[name], state[name])}
    assert moved == (set(norm_buffers(spec)) if NATIVE_DEFAULT[framework] == "train" else set())


def _native_training_forward(framework, model, inputs):
    """A training-mode forward the framework's own way, bypassing the parity adapter."""
    from parity import layouts

    if framework == "torch":
        model.train()
        with torch.no_grad():
            model(torch.from_numpy(inputs))
    elif framework == "keras":
        model(layouts.activation_to_native(framework, inputs, "image"), training=True)
    else:
        model.train()
        model(layouts.activation_to_native(framework, inputs, "image"))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model_train_switches_a_frozen_batch_norm_back_in_torch_and_flax(framework):
    """torch's and Flax's model.train() reset every submodule's mode, the frozen batch norm's too;
    Keras has no model-wide mode (training is a call argument) and its layer flag wins."""
    spec, state = pretrained("mlp")
    fine = parity.transfer(spec, state, NEW_CLASSES)
    model = natively_frozen(framework, fine)
    inputs = parity.example_batch(fine.spec, 8)[0]
    parity.forward(framework, model, inputs, train=True)  # the adapter puts the frozen norms back
    assert same_bits(parity.export_state(framework, model)["blocks.0.bn.running_mean"],
                     fine.state["blocks.0.bn.running_mean"])
    _native_training_forward(framework, model, inputs)
    moved = not same_bits(parity.export_state(framework, model)["blocks.0.bn.running_mean"],
                          fine.state["blocks.0.bn.running_mean"])
    assert moved == (framework != "keras")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_optax_masking_adds_a_zero_update_so_negative_zero_turns_positive(framework):
    spec, state = pretrained("mlp")
    fine = parity.transfer(spec, state, NEW_CLASSES)
    start = dict(fine.state, **{"blocks.0.fc.bias": fine.state["blocks.0.fc.bias"].copy()})
    start["blocks.0.fc.bias"][0] = -0.0
    final = train_trajectory(framework, fine.spec, start, SGD, [parity.example_batch(fine.spec, 8)],
                             frozen=fine.frozen)[-1]
    assert final["blocks.0.fc.bias"][0] == 0.0
    assert np.signbit(final["blocks.0.fc.bias"][0]) == (framework != "jax")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_only_torch_keeps_no_gradient_for_a_frozen_parameter(framework):
    """requires_grad_(False) stops autograd; Keras' trainable flag does not reach the tf.Variable a
    GradientTape watches, and Flax differentiates every Param (the mask acts in the optimizer)."""
    spec, state = pretrained("mlp")
    fine = parity.transfer(spec, state, NEW_CLASSES)
    model = natively_frozen(framework, fine)
    _, grads = parity.loss_and_grads(framework, model, *parity.example_batch(fine.spec, 8), train=True)
    assert np.any(grads["head.weight"])
    assert np.any(grads["blocks.0.fc.weight"]) == (framework != "torch")


def test_keras_optimizers_update_a_non_trainable_variable_they_are_given():
    """trainable=False only keeps a variable out of `trainable_variables`: a variable handed to
    apply_gradients is updated all the same, so keras_impl passes only trainable ones."""
    import keras

    variable = keras.Variable(np.ones(3, "float32"), trainable=False)
    keras.optimizers.SGD(0.1).apply_gradients([(np.ones(3, "float32"), variable)])
    assert np.allclose(variable.numpy(), 0.9)


# --- the native training loops ----------------------------------------------------------------------

@functools.cache
def loop_runs():
    spec, state = pretrained("mlp")
    synthetic = load_dataset("synthetic")  # 16 features, 5 classes: the mlp tiny shape
    fine = parity.transfer(spec, state, synthetic.num_classes)
    runs = {(framework, "custom"): train(framework, fine.spec, synthetic, SGD, epochs=1, batch_size=32,
                                         state=fine.state, frozen=fine.frozen) for framework in FRAMEWORKS}
    runs["keras", "fit"] = train("keras", fine.spec, synthetic, SGD, epochs=1, batch_size=32, loop="fit",
                                 state=fine.state, frozen=fine.frozen)
    return fine, runs


@pytest.mark.parametrize("framework, loop", [(f, "custom") for f in FRAMEWORKS] + [("keras", "fit")])
def test_the_native_loops_keep_the_backbone_bit_identical(framework, loop):
    fine, runs = loop_runs()
    final = runs[framework, loop].state
    moved = [name for name in (*fine.frozen, *norm_buffers(fine.spec)) if not same_bits(final[name], fine.state[name])]
    assert not moved


def test_the_native_loops_fine_tune_the_head_alike():
    fine, runs = loop_runs()
    reference = runs["torch", "custom"].state
    for key, result in runs.items():
        error = max(tolerances.errors(result.state[name], reference[name])[1] for name in reference)
        assert error <= TRAJECTORY["float32"].rtol, f"{key}: {error:.2e}"


# --- parity.transfer itself -------------------------------------------------------------------------

@pytest.mark.parametrize("architecture", ("mlp", "lenet5", "resnet18"))
def test_transfer_keeps_the_backbone_bits_and_initialises_the_head_as_init_state(architecture):
    spec, state = pretrained(architecture)
    fine = parity.transfer(spec, state, 7, seed=3)
    assert fine.spec == spec.replace(num_classes=7) and fine.batch_norm == "frozen"
    fresh = parity.init_state(fine.spec, seed=3)
    head = [name for name in fresh if name.startswith(spec.classifier + ".")]
    assert head and all(same_bits(fine.state[name], fresh[name]) for name in head)
    assert all(same_bits(fine.state[name], state[name]) for name in fine.state if name not in head)
    assert fine.frozen == tuple(n for n, p in parity.layout(fine.spec).items() if p.trainable and n not in head)
    assert all(fine.state[name] is not state[name] for name in fine.state)  # copies: training cannot alias


def test_freeze_takes_backbone_none_or_module_prefixes():
    spec, state = pretrained("resnet18")
    assert parity.transfer(spec, state, 2, "none").frozen == ()
    frozen = parity.transfer(spec, state, 2, ["layer1", "layer2.0.downsample", "bn1"]).frozen
    assert frozen == ("bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias",
                      "layer1.0.conv2.weight", "layer1.0.bn2.weight", "layer1.0.bn2.bias",
                      "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "layer2.0.downsample.1.bias")


@pytest.mark.parametrize("prefix, listed", [
    ("encoder", "top-level modules: ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4', 'fc']"),
    ("layer2.0.downsample.7", "modules in 'layer2.0.downsample': ['layer2.0.downsample.0', 'layer2.0.downsample.1']"),
    ("fc.weight", "its module: ['fc']"),
])
def test_an_unknown_prefix_lists_the_modules_there(prefix, listed):
    spec, state = pretrained("resnet18")
    with pytest.raises(InputError, match=f"freeze: '{prefix}' is not a module of resnet18") as error:
        parity.transfer(spec, state, 2, [prefix])
    assert listed in str(error.value)


@pytest.mark.parametrize("spec_name, state_name, arguments, error, message", [
    ("mlp", "mlp", {"num_classes": 0}, InputError, "num_classes: expected a positive int, got 0"),
    ("mlp", "mlp", {"num_classes": True}, InputError, "num_classes: expected a positive int, got True"),
    ("mlp", "mlp", {"num_classes": 2.0}, InputError, "num_classes: expected a positive int, got 2.0"),
    ("mlp", "mlp", {"freeze": "blocks"}, InputError,
     "freeze: expected 'backbone', 'none' or a list of module prefixes, got 'blocks'"),
    ("mlp", "mlp", {"batch_norm": "eval"}, InputError,
     r"batch_norm: expected one of \['frozen', 'train'\], got 'eval'"),
    ("mlp", "lenet5", {}, StateError, r"(?s)mlp state.*missing 16 tensor\(s\)"),
    ("perceptron", "perceptron", {}, InputError, "perceptron has no num_classes to replace"),
])
def test_bad_transfer_requests_are_refused(spec_name, state_name, arguments, error, message):
    spec = parity.spec(spec_name, "tiny")
    with pytest.raises(error, match=message):
        parity.transfer(spec, parity.init_state(parity.spec(state_name, "tiny")), **{"num_classes": 3, **arguments})


@pytest.mark.parametrize("frozen, batch_norm, message", [
    (["blocks.0.fc.weight", "nope"], "frozen", r"frozen: expected trainable parameters of mlp .*got \['nope'\]"),
    (["blocks.0.bn.running_mean"], "frozen", r"got \['blocks.0.bn.running_mean'\]"),  # a buffer, not a parameter
    ("head.weight", "frozen", "frozen: expected a list of parameter names"),
    (["blocks.0.bn.weight"], "frozen", r"batch norm 'blocks.0.bn' with batch_norm='frozen': expected its "
                                       r"parameters \['blocks.0.bn.weight', 'blocks.0.bn.bias'\] frozen together"),
])
def test_bad_frozen_names_are_refused_before_training(frozen, batch_norm, message):
    spec, state = pretrained("mlp")
    with pytest.raises(InputError, match=message):
        train_trajectory("torch", spec, state, SGD, [parity.example_batch(spec, 8)], frozen=frozen,
                         batch_norm=batch_norm)


def test_grey_images_are_repeated_into_every_channel_of_a_colour_model():
    digits = load_dataset("digits")
    view = digits.for_spec(parity.spec("resnet18", "tiny"))  # 3x32x32, 10 classes
    assert view.x_train.shape == (len(digits.x_train), 3, 32, 32)
    assert all(np.array_equal(view.x_train[:, c], view.x_train[:, 0]) for c in (1, 2))
    assert np.array_equal(view.x_train[:, 0, ::4, ::4], digits.x_train[:, 0])  # x4 nearest-neighbour blocks
    with pytest.raises(InputError, match=r"expected 1-channel images .* to repeat into 1 channels"):
        view.as_channels(1)


# --- checkpoints: parity convert, parity train --from -------------------------------------------------

def _torch_checkpoint(path, architecture="resnet18", wrap=None):
    """A .pth as torchvision writes one: torch.save of the model's state_dict (pytorch_impl's
    names are torchvision's)."""
    spec, state = pretrained(architecture)
    state_dict = parity.build("torch", spec, state).state_dict()
    torch.save(state_dict if wrap is None else {wrap: state_dict, "epoch": 90}, path)
    return spec, state


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_convert_turns_a_torch_state_dict_into_safetensors_with_the_spec(tmp_path, capsys, wrap):
    spec, state = _torch_checkpoint(tmp_path / "resnet18.pth", wrap=wrap)
    out = tmp_path / "resnet18.safetensors"
    assert main(["convert", str(tmp_path / "resnet18.pth"), str(out), "--arch", "resnet18", "--preset", "tiny"]) == 0
    assert str(out) in capsys.readouterr().out
    assert parity.read_spec(out) == spec
    loaded = parity.load_state(out)
    assert list(loaded) == list(state) and all(same_bits(loaded[name], state[name]) for name in state)


class Payload:
    """Any object but tensors and plain containers: weights_only must refuse to build it."""

    built = False

    def __reduce__(self):
        return (_build_payload, ())


def _build_payload():
    Payload.built = True
    return Payload()


def test_convert_refuses_a_pickle_of_anything_but_tensors(tmp_path, capsys):
    source, out = tmp_path / "model.pth", tmp_path / "model.safetensors"
    torch.save({"conv1.weight": torch.zeros(1), "payload": Payload()}, source)
    assert main(["convert", str(source), str(out), "--arch", "resnet18", "--preset", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"checkpoint {str(source)!r}: expected a state dict of tensors" in error
    assert "torch.load(weights_only=True) refused" in error and "test_transfer._build_payload" in error
    assert not Payload.built and not out.exists()


def test_convert_lists_every_problem_and_writes_nothing(tmp_path):
    source, out = tmp_path / "lenet5.pth", tmp_path / "out.safetensors"
    _torch_checkpoint(source, "lenet5")
    out.write_bytes(b"keep me")
    spec = parity.spec("mlp", "tiny")
    with pytest.raises(StateError) as error:
        parity.convert_checkpoint(source, out, spec)
    assert "missing 16 tensor(s)" in str(error.value) and "unexpected 10 tensor(s)" in str(error.value)
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint", "expected a state dict of tensors"),
    (None, "expected a PyTorch .pth file, found nothing there"),
])
def test_convert_refuses_a_corrupt_or_missing_file(tmp_path, content, message):
    source = tmp_path / "broken.pth"
    if content is not None:
        source.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        parity.convert_checkpoint(source, tmp_path / "out.safetensors", parity.spec("mlp", "tiny"))


@pytest.fixture(scope="module")
def digits_sample(tmp_path_factory):
    """40 training and 20 test digits as an .npz (`load_dataset` reads it): one quick epoch."""
    digits = load_dataset("digits")
    path = tmp_path_factory.mktemp("data") / "digits_sample.npz"
    np.savez(path, x_train=digits.x_train[:40], y_train=digits.y_train[:40], x_test=digits.x_test[:20],
             y_test=digits.y_test[:20])
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoint")
    spec, state = _torch_checkpoint(folder / "resnet18.pth")
    return parity.convert_checkpoint(folder / "resnet18.pth", folder / "resnet18.safetensors", spec)


def test_cli_fine_tunes_a_converted_checkpoint_with_a_frozen_backbone(converted, digits_sample, capsys):
    assert main(["train", "resnet18", "--from", str(converted), "--freeze", "backbone", "--dataset",
                 str(digits_sample), "--epochs", "1", "--batch-size", "16", "--optimizer", "sgd", "--lr", "0.1",
                 "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == set(FRAMEWORKS)
    assert all(r["epochs_run"] == 1 and 0 <= r["test_accuracy"] <= 1 for r in results.values())
    losses = [r["history"]["train_loss"][0] for r in results.values()]
    assert max(losses) - min(losses) <= TRAJECTORY["float32"].rtol * max(losses)


@pytest.mark.parametrize("argv, message", [
    (["train", "resnet18", "--freeze", "layer1"], "--freeze and --bn freeze a loaded backbone: expected --from"),
    (["train", "lenet5", "--from", "{checkpoint}"], "expected a lenet5 checkpoint, got resnet18"),
    (["train", "resnet18", "--from", "{checkpoint}", "--preset", "tiny"], "expected no --preset, got 'tiny'"),
    (["train", "resnet18", "--from", "{checkpoint}", "--freeze", "layer9"], "'layer9' is not a module of resnet18"),
    (["train", "resnet18", "--from", "{no_spec}"], "expected a checkpoint with its spec in the metadata"),
    (["train", "resnet18", "--from", "{corrupt}"], "could not parse it"),
])
def test_cli_refuses_what_it_cannot_fine_tune(converted, tmp_path, capsys, argv, message):
    no_spec, corrupt = tmp_path / "no_spec.safetensors", tmp_path / "corrupt.safetensors"
    parity.save_state(no_spec, parity.load_state(converted))
    corrupt.write_bytes(b"\x08" + bytes(20))
    paths = {"checkpoint": converted, "no_spec": no_spec, "corrupt": corrupt}
    assert main([arg.format(**paths) for arg in argv] + ["--epochs", "1"]) == 2
    assert message in capsys.readouterr().err
