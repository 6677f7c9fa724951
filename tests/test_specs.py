import re

import numpy as np
import pytest

import parity
from parity.specs import REGISTRY, spec_from_dict

ARCHITECTURES = parity.architectures()


def test_registry_lists_the_curriculum_models():
    assert ARCHITECTURES[:3] == ["perceptron", "mlp", "lenet5"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_has_tiny_and_reference_presets(name):
    cls = REGISTRY[name]
    assert "tiny" in cls.presets and cls.reference_preset in cls.presets
    for preset in cls.presets:
        spec = parity.spec(name, preset)
        assert spec_from_dict(spec.to_dict()) == spec
    assert parity.spec(name) == parity.spec(name, cls.reference_preset)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_layout_has_unique_names_and_positive_shapes(name):
    for preset in parity.presets(name):
        entries = parity.layout(parity.spec(name, preset))
        assert entries and all(all(d > 0 for d in p.shape) for p in entries.values())


def test_lenet5_layout_is_the_paper_layout():
    shapes = {n: p.shape for n, p in parity.layout(parity.spec("lenet5")).items()}
    assert shapes == {"conv1.weight": (6, 1, 5, 5), "conv1.bias": (6,), "conv2.weight": (16, 6, 5, 5),
                      "conv2.bias": (16,), "fc1.weight": (120, 400), "fc1.bias": (120,),
                      "fc2.weight": (84, 120), "fc2.bias": (84,), "fc3.weight": (10, 84), "fc3.bias": (10,)}
    assert sum(int(np.prod(s)) for s in shapes.values()) == 61706  # LeNet-5's 61,706 parameters


def test_mlp_reference_layout_and_buffers():
    entries = parity.layout(parity.spec("mlp", batch_norm=True))
    assert entries["blocks.0.fc.weight"].shape == (512, 784)
    assert entries["head.weight"].shape == (10, 512)
    assert entries["blocks.1.bn.running_var"].trainable is False
    assert entries["blocks.1.bn.num_batches_tracked"].dtype == "int64"


def test_unknown_architecture_lists_the_registered_ones():
    with pytest.raises(parity.SpecError, match=r"unknown architecture 'resnet9000'.*perceptron.*mlp.*lenet5"):
        parity.spec("resnet9000")


def test_unknown_field_lists_the_valid_ones():
    with pytest.raises(parity.SpecError, match=r"unknown field\(s\) \['widht'\].*hidden_sizes"):
        parity.spec("mlp", widht=3)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(parity.SpecError, match=r"unknown preset 'huge'.*tiny"):
        parity.spec("lenet5", "huge")


@pytest.mark.parametrize("name, field, value, expected", [
    ("mlp", "activation", "swish", "one of"),
    ("mlp", "dropout", 1.0, r"\[0, 1\)"),
    ("mlp", "hidden_sizes", (3, 0), "positive ints"),
    ("mlp", "in_features", 0, "positive int"),
    ("mlp", "bn_momentum", 0.0, r"\(0, 1\)"),
    ("lenet5", "image_size", 30, r"\[28, 32\]"),
    ("lenet5", "pooling", "l2", "avg"),
    ("perceptron", "output", "relu", "step"),
])
def test_invalid_field_values_name_field_expected_and_given(name, field, value, expected):
    with pytest.raises(parity.SpecError) as error:
        parity.spec(name, **{field: value})
    message = str(error.value)
    assert message.startswith(f"{name}.{field}: expected ") and message.endswith(f"got {value!r}")
    assert re.search(expected, message)


def test_specs_are_frozen():
    spec = parity.spec("mlp")
    with pytest.raises(Exception):
        spec.in_features = 3  # type: ignore[misc]


def test_spec_from_dict_rejects_unknown_keys():
    with pytest.raises(parity.SpecError, match="unknown field"):
        spec_from_dict({"architecture": "mlp", "depth": 3})
