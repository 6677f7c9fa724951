"""torchvision compatibility: a torchvision state dict loads unchanged into all three frameworks,
and all three reproduce torchvision's own outputs (eval and training mode) and batch-norm updates.

Default run: every torchvision layout (EfficientNet B0-B7 included); one network per family at
its real widths and depths on 64x64 images, float32. `-m slow`: the other networks, and all of
them at 224x224 in float32 (the issue's ≤1e-4) and float64 (≤1e-10).
"""
import functools

import numpy as np
import pytest
import torch

import parity
from parity import tolerances

TORCHVISION = [(name, preset) for name in parity.architectures()
               for preset in parity.spec(name).torchvision_presets]
TORCHVISION_NAMES = [name for name in parity.architectures() if parity.spec(name).torchvision_presets]
SMALL_IMAGE = 64  # AlexNet's 11x11/4 stem and three 3x3/2 pools need at least 63
FLOAT32_224 = 1e-4  # the bound for float32 at 224x224
# float32 training mode at real depth: each of 20-104 batch norms divides by a batch std estimated from
# few values (B x H x W = 4 x 2 x 2 in ResNet's last stage at 64x64) and so amplifies the frameworks'
# different rounding. Measured worst 2.0e-4 (ResNet-101), 3.9e-5 (ResNet-50), 4.0e-4 for ResNet-50 at
# 32x32 (4 values per channel); running variances 1.1e-5 (ResNet-101, 224x224); the same checks agree to
# 7.8e-13 in float64: conditioning, not math.
FLOAT32_TRAIN_REAL_DEPTH = 5e-4


def torchvision_model(torchvision, spec, state):
    """torchvision's own model for this spec holding `state`: built on the meta device (torchvision's
    initialisers cost seconds at VGG size) and then given the canonical state, unchanged."""
    with torch.device("meta"):
        # Dropout-like layers off: their random streams are each framework's own.
        model = torchvision.models.get_model(spec.architecture, num_classes=spec.num_classes,
                                             **{name: 0.0 for name in spec.stochastic_fields})
    model.to(getattr(torch, parity.state.state_dtype(state))).to_empty(device="cpu")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return model


@pytest.mark.parametrize("name, preset", TORCHVISION)
def test_layout_is_torchvisions_state_dict(name, preset, torchvision):
    """Names, order, shapes and dtypes: built on the meta device, so even B7 costs nothing."""
    with torch.device("meta"):
        reference = torchvision.models.get_model(preset).state_dict()
    entries = parity.layout(parity.spec(name, preset))
    assert list(entries) == list(reference)
    for key, param in entries.items():
        assert param.shape == tuple(reference[key].shape), key
        assert (param.dtype == "int64") == (reference[key].dtype == torch.int64), key


@functools.lru_cache(maxsize=1)  # one architecture at a time: the three frameworks share it
def torchvision_run(name, dtype, image_size):
    """torchvision's outputs from one canonical state: eval logits, training-mode logits, and the
    batch-norm buffers that training-mode forward leaves behind."""
    torchvision = parity.reference.import_torchvision()
    spec = parity.spec(name, num_classes=10, image_size=image_size).deterministic()
    state = parity.init_state(spec, dtype=dtype, random_norms=True)  # random BN stats: none may be ignored
    reference = torchvision_model(torchvision, spec, state)
    inputs = np.random.default_rng(1).standard_normal((4, *spec.input_shape)).astype(dtype)
    with torch.no_grad():
        logits = [reference.train(train)(torch.from_numpy(inputs)).numpy() for train in (False, True)]
    buffers = {key: value.numpy() for key, value in reference.state_dict().items()
               if key.endswith(("running_mean", "running_var"))}
    return spec, state, inputs, logits, buffers


def check_against_torchvision(framework, name, dtype, image_size, tolerances_eval_train):
    spec, state, inputs, logits, buffers = torchvision_run(name, dtype, image_size)
    model = parity.build(framework, spec, state)
    for train, want, tolerance in zip((False, True), logits, tolerances_eval_train):
        got = parity.forward(framework, model, inputs, train=train)["logits"]
        assert tolerances.errors(got, want)[1] <= tolerance, f"{'train' if train else 'eval'} logits"
    after = parity.export_state(framework, model)
    for key, want in buffers.items():  # moved by the training-mode pass: its conditioning, its bound
        assert tolerances.errors(after[key], want)[1] <= tolerances_eval_train[1], key


# One network per family and block type in the default run; every one under -m slow.
DEFAULT = ["alexnet", "vgg11_bn", "resnet18", "resnet50", "densenet121", "efficientnet_b0"]


@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
@pytest.mark.parametrize("name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow)
                                  for n in TORCHVISION_NAMES])
def test_torchvision_weights_reproduce_torchvision(name, framework, torchvision):
    check_against_torchvision(framework, name, "float32", SMALL_IMAGE,
                              (tolerances.FORWARD["float32"].rtol, FLOAT32_TRAIN_REAL_DEPTH))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("framework", parity.FRAMEWORKS)
@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_at_224(name, framework, dtype, torchvision):
    bounds = (FLOAT32_224, FLOAT32_TRAIN_REAL_DEPTH) if dtype == "float32" else (1e-10, 1e-10)  # the issue's
    check_against_torchvision(framework, name, dtype, 224, bounds)
