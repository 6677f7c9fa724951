"""The registry: every architecture's spec class, by name."""
from __future__ import annotations

import warnings
from typing import Any

from parity.errors import SpecError
from parity.specs.base import Spec, TensorDecl
from parity.specs.alexnet import AlexNetSpec
from parity.specs.attention import MHASpec, TransformerSpec
from parity.specs.bert import BertSpec
from parity.specs.char_lm import CharLMSpec
from parity.specs.densenet import DenseNet121Spec
from parity.specs.efficientnet import EfficientNetB0Spec
from parity.specs.gpt2 import GPT2Spec
from parity.specs.t5 import T5Spec
from parity.specs.lenet5 import LeNet5Spec
from parity.specs.mlp import MLPSpec
from parity.specs.perceptron import PerceptronSpec
from parity.specs.recurrent import GRUSpec, LSTMSpec, RNNSpec
from parity.specs.seq2seq import BahdanauSpec, LuongSpec, Seq2SeqSpec
from parity.specs.resnet import ResNet18Spec, ResNet34Spec, ResNet50Spec, ResNet101Spec
from parity.specs.vgg import VGG11BNSpec, VGG11Spec, VGG16BNSpec, VGG16Spec

REGISTRY: dict[str, type[Spec]] = {cls.architecture: cls for cls in (
    PerceptronSpec, MLPSpec, LeNet5Spec, AlexNetSpec, VGG11Spec, VGG11BNSpec, VGG16Spec, VGG16BNSpec,
    ResNet18Spec, ResNet34Spec, ResNet50Spec, ResNet101Spec, DenseNet121Spec, EfficientNetB0Spec,
    RNNSpec, LSTMSpec, GRUSpec, CharLMSpec, BahdanauSpec, LuongSpec, MHASpec, TransformerSpec, BertSpec, GPT2Spec, T5Spec)}


def architectures() -> list[str]:
    """Names of every registered architecture, in curriculum order."""
    return list(REGISTRY)


def presets(name: str) -> list[str]:
    return list(_spec_class(name).presets)


def _spec_class(name: str) -> type[Spec]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown architecture {name!r}; registered: {architectures()}") from None


def spec(name: str, preset: str | None = None, **overrides: Any) -> Spec:
    """Build a spec: the named preset (default: the reference size) with field overrides.

    The transformers' fields carry Hugging Face config names, so `spec("gpt2",
    **GPT2Config(...).to_dict())` gives that model: in that path only (the dict has HF's
    `model_type` key), keys that are not fields are ignored, with a warning listing them."""
    cls = _spec_class(name)
    preset = cls.reference_preset if preset is None else preset
    if preset not in cls.presets:
        raise SpecError(f"{name}: unknown preset {preset!r}; presets are {list(cls.presets)}")
    unknown = sorted(set(overrides) - set(cls.field_names()))
    if unknown and "model_type" in overrides:  # a Hugging Face config's to_dict(): its own keys
        warnings.warn(f"{name}: ignored Hugging Face config keys that are not spec fields: {unknown}",
                      stacklevel=2)
        overrides = {key: value for key, value in overrides.items() if key not in unknown}
        unknown = []
    if unknown:
        raise SpecError(f"{name}: unknown field(s) {unknown}; valid fields are {cls.field_names()}")
    return cls(**{**cls.presets[preset], **overrides})


def spec_from_dict(data: dict[str, Any]) -> Spec:
    """Inverse of `Spec.to_dict()` (used for checkpoint metadata)."""
    data = dict(data)
    name = data.pop("architecture", None)
    if name is None:
        raise SpecError(f"spec dict has no 'architecture' key; got keys {sorted(data)}")
    cls = _spec_class(name)
    unknown = sorted(set(data) - set(cls.field_names()))
    if unknown:
        raise SpecError(f"{name}: unknown field(s) {unknown}; valid fields are {cls.field_names()}")
    return cls(**data)
