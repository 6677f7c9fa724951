"""Optimizers, framework-neutral: a spec in torch.optim's vocabulary, its learning-rate schedule,
and a numpy reference of every update rule.

torch.optim's semantics are canonical (names, defaults, formulas). `OptimizerSpec` is what each
framework's native optimizer is configured from (`*_impl/optimizers.py`); `learning_rate` is the
single definition of the schedules; `reference_step` is the textbook rule the three native
trajectories are checked against (`parity.training.reference_trajectory`).

Steps are counted from 0: `learning_rate(spec, 0)` is the learning rate of the first update, and
`reference_step(..., step=0)` is the first update (Adam's bias correction uses t = step + 1).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from parity.errors import InputError, SpecError
from parity.tolerances import Tolerance

# torch.optim's defaults, per optimizer: the hyper-parameters each one accepts.
HYPER_PARAMETERS: dict[str, dict[str, Any]] = {
    "sgd": {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
    "adagrad": {"lr": 1e-2, "eps": 1e-10, "weight_decay": 0.0, "initial_accumulator_value": 0.0},
    "rmsprop": {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0, "centered": False},
}
# Schedule -> its fields and their defaults (None: required). torch.optim.lr_scheduler's names.
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},  # StepLR
    "cosine": {"total_steps": None},  # CosineAnnealingLR(T_max=total_steps, eta_min=0)
    "linear_warmup": {"warmup_steps": None},  # LinearLR from lr / warmup_steps up to lr
    # transformers.get_cosine_schedule_with_warmup (BERT, GPT-2): 0 up to lr over warmup_steps,
    # then a half cosine down to 0 at total_steps
    "warmup_cosine": {"warmup_steps": None, "total_steps": None},
}
_SCHEDULE_FIELDS = ("step_size", "gamma", "total_steps", "warmup_steps")

# Trajectories compound a step's rounding over every later step. Measured worst over 20 steps of
# every configuration in tests/test_optimizers.py, every pair of torch/keras/jax/numpy reference:
# float32 1.5e-6, float64 2.7e-14 (LeNet-5 Adam; 2.3e-15 for the rest).
TRAJECTORY = {
    "float32": Tolerance(1e-5, "20 steps: measured worst 1.5e-6 (~7x headroom); a mis-mapped rule (eps "
                               "placement, lr folded into momentum) shows at 1e-3 and above"),
    "float64": Tolerance(1e-10, "20 steps: measured worst 2.7e-14; any float32 hyper-parameter or op "
                                "(Keras' ops.cast of a Python float, optax's int32 step counter) shows at ~1e-9"),
}
# Adam (and Adagrad, RMSprop) divide each entry by its own gradient's magnitude, so an entry whose
# gradient is a small difference of large batch terms (ReLU/max-pool features of LeNet-5) carries
# float32 rounding noise that becomes a step of up to lr, framework-dependent. Measured worst:
# 2.7e-4 (LeNet-5 tiny, Adam, torch vs keras/jax after 20 steps) against 1.5e-6 for the MLP;
# the same trajectories agree to 2.7e-14 in float64, so the optimizers themselves match.
ADAPTIVE_FLOAT32 = Tolerance(1e-3, "adaptive optimizers normalise float32 rounding noise of "
                                   "cancelling gradient entries into lr-sized steps: measured worst 2.7e-4 "
                                   "(LeNet-5 tiny, Adam, 20 steps); float64 checks the rule at 1e-10")


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer and its schedule, in torch.optim's names. Fields the optimizer (or the
    schedule) does not use are None; the ones it uses default to torch's values. `clip_norm`
    (None: no clipping) scales every step's gradients to at most that global L2 norm, before the
    rule sees them (torch's clip_grad_norm_: see `clip_by_global_norm`)."""

    name: str
    lr: float | None = None
    momentum: float | None = None
    dampening: float | None = None
    nesterov: bool | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    weight_decay: float | None = None
    alpha: float | None = None
    centered: bool | None = None
    initial_accumulator_value: float | None = None
    schedule: str = "constant"
    step_size: int | None = None
    gamma: float | None = None
    total_steps: int | None = None
    warmup_steps: int | None = None
    clip_norm: float | None = None  # any optimizer: clip the gradients to this global norm first

    def __post_init__(self):
        if self.name not in HYPER_PARAMETERS:
            raise SpecError(f"optimizer.name: expected one of {list(HYPER_PARAMETERS)}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise SpecError(f"optimizer.schedule: expected one of {list(SCHEDULES)}, got {self.schedule!r}")
        self._fill_defaults(f"optimizer {self.name!r}", "hyper-parameters", HYPER_PARAMETERS[self.name],
                            _hyper_fields())
        self._fill_defaults(f"schedule {self.schedule!r}", "fields", SCHEDULES[self.schedule], _SCHEDULE_FIELDS)
        if isinstance(self.betas, list):  # JSON gives lists: store the canonical tuple
            object.__setattr__(self, "betas", tuple(self.betas))
        self._validate()

    def _fill_defaults(self, owner: str, what: str, defaults: dict[str, Any], fields) -> None:
        """Reject the `fields` this optimizer/schedule has no use for; fill the unset ones it has."""
        stray = [f for f in fields if f not in defaults and getattr(self, f) is not None]
        if stray:
            raise SpecError(f"{owner} takes no {stray}; its {what} are {list(defaults)}")
        for field, default in defaults.items():
            if getattr(self, field) is None:
                if default is None:
                    raise SpecError(f"optimizer.{field}: the {self.schedule!r} schedule needs it, got None")
                object.__setattr__(self, field, default)

    def _require(self, ok: bool, field: str, expected: str) -> None:
        if not ok:
            raise SpecError(f"optimizer.{field}: expected {expected}, got {getattr(self, field)!r}")

    def _number(self, field: str, expected: str, ok) -> None:
        """A real number (stored as float) for which `ok(value)` holds; None is left alone."""
        value = getattr(self, field)
        if value is not None:
            self._require(isinstance(value, (int, float)) and not isinstance(value, bool) and ok(value),
                          field, expected)
            object.__setattr__(self, field, float(value))

    def _positive_int(self, field: str) -> None:
        value = getattr(self, field)
        if value is not None:
            self._require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                          field, "a positive int")

    def _validate(self) -> None:
        self._number("lr", "a float > 0", lambda v: v > 0)
        self._number("momentum", "a float in [0, 1)", lambda v: 0 <= v < 1)
        # Keras and optax have no dampening: only torch's default 0 has a native equivalent.
        self._require(self.dampening in (None, 0, 0.0), "dampening",
                      "0 (Keras and optax have no dampening)")
        for field in ("nesterov", "centered"):
            self._require(getattr(self, field) is None or isinstance(getattr(self, field), bool), field, "a bool")
        if self.nesterov:
            self._require(self.momentum > 0, "nesterov", "False when momentum is 0 (as torch.optim.SGD)")
        if self.betas is not None:
            self._require(isinstance(self.betas, tuple) and len(self.betas) == 2 and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.betas),
                "betas", "a pair of floats in [0, 1)")
            object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for field in ("eps", "weight_decay", "initial_accumulator_value"):
            self._number(field, "a float >= 0", lambda v: v >= 0)
        self._number("alpha", "a float in [0, 1)", lambda v: 0 <= v < 1)
        self._positive_int("step_size")
        self._number("gamma", "a float in (0, 1]", lambda v: 0 < v <= 1)
        self._positive_int("total_steps")
        self._positive_int("warmup_steps")
        if self.schedule == "warmup_cosine":
            self._require(self.warmup_steps < self.total_steps, "warmup_steps",
                          f"fewer than total_steps ({self.total_steps})")
        self._number("clip_norm", "a finite float > 0", lambda v: 0 < v < math.inf)

    def hyper_parameters(self) -> dict[str, Any]:
        """The optimizer's torch.optim keyword arguments (no schedule fields)."""
        return {f: getattr(self, f) for f in HYPER_PARAMETERS[self.name]}


def _hyper_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(OptimizerSpec)
            if f.name not in ("name", "schedule", "clip_norm", *_SCHEDULE_FIELDS)]


def optimizer(name: str, **hyper: Any) -> OptimizerSpec:
    """An `OptimizerSpec`: `optimizer("adam", lr=1e-3, schedule="cosine", total_steps=100, clip_norm=1.0)`."""
    if name not in HYPER_PARAMETERS:
        raise SpecError(f"unknown optimizer {name!r}; expected one of {list(HYPER_PARAMETERS)}")
    schedule = hyper.get("schedule", "constant")
    valid = [*HYPER_PARAMETERS[name], "clip_norm", "schedule", *SCHEDULES.get(schedule, {})]
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise SpecError(f"optimizer {name!r}: unknown hyper-parameter(s) {unknown}; valid ones are {valid}")
    return OptimizerSpec(name, **hyper)


def require_optimizer_spec(optimizer) -> OptimizerSpec:
    if not isinstance(optimizer, OptimizerSpec):
        raise InputError(f"optimizer: expected a parity.optimizers.OptimizerSpec (see parity.optimizers.optimizer), "
                         f"got {type(optimizer).__name__}")
    return optimizer


def check_schedule_covers(optimizer: OptimizerSpec, steps: int) -> None:
    """A run of `steps` updates stays within the schedule where the frameworks agree."""
    if optimizer.schedule in ("cosine", "warmup_cosine") and optimizer.total_steps < steps:
        # torch's CosineAnnealingLR rises again after T_max; Keras and optax hold the last value.
        raise InputError(f"optimizer.total_steps: expected at least the number of steps ({steps}) for the "
                         f"cosine schedule, got {optimizer.total_steps}")


def learning_rate(spec: OptimizerSpec, step: int) -> float:
    """The learning rate of update number `step` (0-based): THE definition of every schedule."""
    if spec.schedule == "step":  # StepLR: decay by gamma every step_size updates
        return spec.lr * spec.gamma ** (step // spec.step_size)
    if spec.schedule == "cosine":  # CosineAnnealingLR, held at 0 after total_steps
        return spec.lr * (1 + math.cos(math.pi * min(step, spec.total_steps) / spec.total_steps)) / 2
    if spec.schedule == "linear_warmup":  # lr/w, 2lr/w, ..., lr, then constant
        return spec.lr * min(1.0, (step + 1) / spec.warmup_steps)
    if spec.schedule == "warmup_cosine":  # 0, lr/w, ..., lr at step w, then cosine to 0 at total_steps
        warmup, total = spec.warmup_steps, spec.total_steps
        if step < warmup:
            return spec.lr * step / warmup
        return spec.lr * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2
    return spec.lr


def reference_step(spec: OptimizerSpec, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
                   slots: dict[str, dict[str, np.ndarray]], step: int):
    """One update of every parameter in `grads`, in numpy, following the formulas of the
    torch.optim docs. `slots` maps a parameter name to its state (torch's names: momentum_buffer,
    exp_avg, exp_avg_sq, sum, square_avg, grad_avg); empty on the first step. Returns new
    `(params, slots)`; the inputs are not modified."""
    rule = _RULES[spec.name]
    lr = learning_rate(spec, step)
    if spec.clip_norm is not None:
        grads = clip_by_global_norm(grads, spec.clip_norm)
    new_params, new_slots = dict(params), {}
    for name, g in grads.items():
        new_params[name], new_slots[name] = rule(spec, params[name], g, dict(slots.get(name, {})), lr, step + 1)
    return new_params, new_slots


# Clipping by global norm, torch.nn.utils.clip_grad_norm_'s formula (canonical), before the rule
# (so before torch's coupled weight decay), over every trained gradient:
#     g <- g * min(max_norm / (total_norm + 1e-6), 1),  total_norm = || (||g_1||, ||g_2||, ...) ||
# The native utilities of the other two have no eps (read in their sources: Keras 3.15, optax 0.2.8):
#     Keras  global_clipnorm:      g * max_norm * min(1 / total_norm, 1 / max_norm)
#     optax  clip_by_global_norm:  g if total_norm < max_norm else g / total_norm * max_norm
# i.e. a relative 1e-6 / total_norm more in every clipped gradient than torch's. Measured: this
# reference with eps 0 against eps 1e-6, 20 clipped steps of the tiny MLP without batch norm
# (gradient norms 0.3-0.7, max_norm 0.5), trajectory error relative to scale: float64 1.3e-6 (SGD
# momentum, lr 0.05), 4.0e-7 (Adam, lr 1e-2), 4.7e-6 (Adam + weight decay 0.1): 4 orders above the
# float64 tolerance; float32 1.2e-6, 4.8e-7, 4.6e-6: up to half the float32 tolerance. The native
# Keras and optax runs matched the eps-0 reference to 2e-15 and torch's matched eps 1e-6, so the
# eps is the whole difference. Hence Keras and optax keep their option and hook but compute torch's
# scale (keras_impl/optimizers.py _TorchClipNorm, jax_impl/optimizers.py _clip_by_global_norm);
# tests/test_optimizers.py test_native_clipping_has_no_eps pins the natives' difference.
CLIP_EPS = 1e-6


def global_norm(grads: dict[str, np.ndarray]):
    """The L2 norm of every gradient together, as torch computes it: the norm of the per-tensor
    norms, in the gradients' dtype."""
    return np.linalg.norm(np.stack([np.linalg.norm(g.reshape(-1)) for g in grads.values()]))


def clip_by_global_norm(grads: dict[str, np.ndarray], max_norm: float, eps: float = CLIP_EPS):
    """The gradients scaled by min(max_norm / (global norm + eps), 1): torch's clip_grad_norm_
    (eps = 0 is the native Keras and optax rule). A new dict; dtypes kept."""
    scale = np.minimum(max_norm / (global_norm(grads) + eps), 1.0)
    return {name: g * scale for name, g in grads.items()}


# Each rule: (spec, p, g, its slots, lr, t = 1-based step) -> (new p, slots). numpy keeps the
# arrays' dtype (Python floats are weak scalars), so a float32 state is updated in float32.

def _sgd(spec, p, g, s, lr, t):
    g = g + spec.weight_decay * p  # torch's weight_decay: L2 folded into the gradient
    if spec.momentum:
        s["momentum_buffer"] = b = spec.momentum * s.get("momentum_buffer", 0 * g) + g
        g = g + spec.momentum * b if spec.nesterov else b
    return p - lr * g, s


def _adam(spec, p, g, s, lr, t):
    beta1, beta2 = spec.betas
    if spec.name == "adamw":
        p = p * (1 - lr * spec.weight_decay)  # decoupled: shrink the weights, gradient untouched
    else:
        g = g + spec.weight_decay * p  # Adam's weight_decay is coupled (L2 on the gradient)
    s["exp_avg"] = m = beta1 * s.get("exp_avg", 0 * g) + (1 - beta1) * g
    s["exp_avg_sq"] = v = beta2 * s.get("exp_avg_sq", 0 * g) + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + spec.eps), s


def _adagrad(spec, p, g, s, lr, t):
    g = g + spec.weight_decay * p
    s["sum"] = total = s.get("sum", 0 * g + spec.initial_accumulator_value) + g * g
    return p - lr * g / (np.sqrt(total) + spec.eps), s  # eps outside the square root


def _rmsprop(spec, p, g, s, lr, t):
    alpha = spec.alpha
    g = g + spec.weight_decay * p
    s["square_avg"] = v = alpha * s.get("square_avg", 0 * g) + (1 - alpha) * g * g
    if spec.centered:  # divide by the standard deviation: subtract the squared mean gradient
        s["grad_avg"] = mean = alpha * s.get("grad_avg", 0 * g) + (1 - alpha) * g
        v = v - mean * mean
    step = g / (np.sqrt(v) + spec.eps)  # eps outside the square root
    if spec.momentum:  # the buffer holds normalised gradients; lr multiplies afterwards
        s["momentum_buffer"] = step = spec.momentum * s.get("momentum_buffer", 0 * g) + step
    return p - lr * step, s


_RULES = {"sgd": _sgd, "adam": _adam, "adamw": _adam, "adagrad": _adagrad, "rmsprop": _rmsprop}


# --- optimizer state in canonical form (checkpoints that cross frameworks) -------------------
# torch.optim's per-parameter state names, prefixed "optimizer.<parameter>.", plus the number of
# updates done ("optimizer.step": torch keeps it for every optimizer but SGD, and a schedule's
# position is that count); each slot has its parameter's shape and layout kind, so the layout
# table converts it.

def state_slots(opt_spec: OptimizerSpec) -> tuple[str, ...]:
    """The per-parameter state torch.optim keeps for this optimizer configuration."""
    if opt_spec.name == "sgd":
        return ("momentum_buffer",) if opt_spec.momentum else ()
    if opt_spec.name in ("adam", "adamw"):
        return ("exp_avg", "exp_avg_sq")
    if opt_spec.name == "adagrad":
        return ("sum",)
    return ("square_avg", *(("momentum_buffer",) if opt_spec.momentum else ()),
            *(("grad_avg",) if opt_spec.centered else ()))


def state_layout(opt_spec: OptimizerSpec, spec) -> dict:
    """Every canonical optimizer-state tensor for a model spec: Params like `parity.layout`'s.
    The step count is there whenever something depends on it: every optimizer but plain SGD,
    and any schedule (its position)."""
    from parity.params import Param
    from parity.state import layout

    entries = {}
    if opt_spec.name != "sgd" or opt_spec.schedule != "constant":
        entries["optimizer.step"] = Param((), "counter", "zeros", dtype="int64", trainable=False)
    for name, param in layout(spec).items():
        if param.trainable:
            for slot in state_slots(opt_spec):
                entries[f"optimizer.{name}.{slot}"] = Param(param.shape, param.kind, "zeros", trainable=False,
                                                            meta=param.meta)
    return entries


def split_state_name(full_name: str) -> tuple[str, str]:
    """"optimizer.blocks.0.fc.weight.exp_avg" -> ("blocks.0.fc.weight", "exp_avg")."""
    parameter, slot = full_name.removeprefix("optimizer.").rsplit(".", 1)
    return parameter, slot
