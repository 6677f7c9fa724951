"""The base of every architecture spec: a frozen dataclass of plain numbers and strings.

A spec fully determines a model (config lives here, never in model files). Subclasses declare
`architecture`, `presets`, `reference_preset`, and implement `layout()` and `input_shape`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from parity.errors import SpecError
from parity.params import Param

IGNORE_INDEX = -100  # a masked_cross_entropy target the loss skips (Hugging Face's labels convention)
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "leaky_relu", "silu")


@dataclasses.dataclass(frozen=True)
class TensorDecl:
    """One named input (or the targets) of a model that declares its inputs: the shape in ints
    and axis names ("B" the batch; every other name bound consistently across the inputs), the
    dtype ("float": the model's float dtype; "int": integer ids in [low, high), passed as int64;
    "bool": a bool mask; "mask": 0/1 integers or bools, passed as int64 0/1)."""
    shape: tuple
    dtype: str
    high: int | None = None
    low: int = 0
    meaning: str = ""
    required: bool = False  # for inputs besides the main one (which is always required)
    ignore_index: int | None = None  # "int" targets: this value marks a position the loss skips


@dataclasses.dataclass(frozen=True)
class Spec:
    architecture: ClassVar[str]
    presets: ClassVar[dict[str, dict[str, Any]]]
    reference_preset: ClassVar[str]
    input_kind: ClassVar[str]  # "features" (B, F), "image" (B, C, H, W) or "sequence" (B, T, F)
    optional_inputs: ClassVar[tuple[str, ...]] = ()  # named inputs besides the `input_kind` one
    # "cross_entropy" (int class targets), "masked_cross_entropy" (the same, mean over the targets
    # that are not IGNORE_INDEX, Hugging Face's -100), "binary_cross_entropy" (0/1 floats) or
    # "mse" (float targets shaped like the `loss_output` output)
    loss: ClassVar[str]
    output_names: ClassVar[tuple[str, ...]] = ("logits",)  # what forward returns, in this order
    loss_output: ClassVar[str] = "logits"  # the output the loss reads
    stochastic_fields: ClassVar[tuple[str, ...]] = ()  # rates of dropout-like layers (random in training)
    classifier: ClassVar[str]  # module prefix of the final Linear head (what parity.transfer replaces)
    torchvision_presets: ClassVar[tuple[str, ...]] = ()  # presets that torchvision.models.<preset>() builds
    family: ClassVar[str | None] = None  # the docs page (docs/<family>.md) shared by related architectures

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Canonical shape of one example (no batch axis)."""
        raise NotImplementedError

    def layout(self) -> dict[str, Param]:
        """Every canonical tensor, in module order, parameters and buffers."""
        raise NotImplementedError

    # Models with named inputs (attention, the Transformer, BERT, GPT-2, T5) declare them, and
    # parity validates and builds examples from the declaration. The older families return None
    # and keep their hand-written checks (parity/frameworks.py).
    def declared_inputs(self) -> dict[str, TensorDecl] | None:
        """Named inputs, the main one (`input_kind`) first; the others are `optional_inputs`."""
        return None

    def declared_outputs(self) -> dict[str, tuple]:
        """Each output's shape in the axis names of `declared_inputs` (symbolic axes of exports)."""
        return {name: ("B",) for name in self.output_names}

    def axis_limits(self) -> dict[str, tuple[int, str]]:
        """Largest size of an axis name and the field that sets it (a positions table)."""
        return {}

    def declared_targets(self) -> TensorDecl:
        """The loss targets, in the axis names of `declared_inputs`."""
        raise NotImplementedError

    def example_inputs(self, rng, batch_size: int, dtype: str):
        """Deterministic (inputs, targets) for checks and benchmarks, from a numpy Generator."""
        raise NotImplementedError

    def tied_weights(self) -> dict[str, str]:
        """Alias name -> canonical name, for reference state dicts that hold one tied tensor
        under two names (GPT-2's `lm_head.weight` is `transformer.wte.weight`). The layout holds
        it once; loading accepts an alias equal to its target and drops it."""
        return {}

    @classmethod
    def docs_page(cls) -> str:
        return f"{cls.family or cls.architecture}.md"

    @property
    def has_batch_norm(self) -> bool:
        return any(param.init == "norm_var" for param in self.layout().values())

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **dataclasses.asdict(self)}

    def stochastic_rates(self) -> dict[str, float]:
        """Every dropout-like rate of this spec, by field name (all 0 in a deterministic spec)."""
        return {name: getattr(self, name) for name in self.stochastic_fields}

    def deterministic(self) -> "Spec":
        """This spec with every dropout-like rate at 0: the frameworks' random streams cannot
        match, so exact training-mode checks run without them (tests check them statistically)."""
        return self.replace(**{name: 0.0 for name in self.stochastic_fields})

    def replace(self, **overrides) -> "Spec":
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise SpecError(f"{self.architecture}: unknown field(s) {unknown}; "
                            f"valid fields are {self.field_names()}")
        return dataclasses.replace(self, **overrides)

    # Validation helpers for __post_init__: each names the field, the expectation and the value.
    def _require(self, ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise SpecError(f"{self.architecture}.{field}: expected {expected}, "
                            f"got {getattr(self, field)!r}")

    def _positive_int(self, field: str) -> None:
        value = getattr(self, field)
        self._require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                      field, "a positive int")

    def _choice(self, field: str, choices: tuple) -> None:
        self._require(getattr(self, field) in choices, field, f"one of {list(choices)}")

    def _probability(self, field: str) -> None:
        value = getattr(self, field)
        self._require(isinstance(value, (int, float)) and not isinstance(value, bool)
                      and 0.0 <= value < 1.0, field, "a float in [0, 1)")

    def _batch_norm_constants(self) -> None:
        """`bn_eps` > 0 and `bn_momentum` in (0, 1), torch's convention (Keras and Flax use 1 - m)."""
        self._positive_float("bn_eps")
        self._require(isinstance(self.bn_momentum, float) and 0 < self.bn_momentum < 1,
                      "bn_momentum", "a float in (0, 1) (torch convention)")

    def _positive_float(self, field: str) -> None:
        value = getattr(self, field)
        self._require(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
                      field, "a positive float")
