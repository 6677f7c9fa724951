"""Training trajectories: N optimizer steps in one framework, the canonical state after each.

`train_trajectory` runs a framework's *native* optimizer (`<impl>/optimizers.py`, imported by
framework name the first time it is used) on the spec's loss in training mode;
`reference_trajectory` runs the numpy textbook rule (`parity.optimizers.reference_step`) on
gradients from the torch adapter. Equal trajectories mean equal optimizers, step by step.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from parity.errors import CheckpointError, InputError
from parity.frameworks import build, export_state, impl_module, load_state, loss_and_grads
from parity.optimizers import (OptimizerSpec, check_schedule_covers, reference_step, require_optimizer_spec,
                               state_layout)
from parity.specs import Spec
from parity.state import (SPEC_KEY, check_entries, check_state, layout, read_metadata, read_spec, read_tensors,
                          save_state)
from parity.transfer import check_frozen

_OPTIMIZER_KEY = "parity.optimizer"


def _optimizers(framework: str):
    """`pytorch_impl.optimizers`, `keras_impl.optimizers` or `jax_impl.optimizers`."""
    return impl_module(framework, "optimizers")


def _as_dtype(state: dict, batches: list, dtype: str | None):
    """The state's float tensors and the batches' float arrays (named inputs too) in `dtype`
    (None: unchanged)."""
    if dtype is None:
        return state, batches

    def cast(array):
        if isinstance(array, dict):  # named inputs: tokens, h_0, ...
            return {name: cast(value) for name, value in array.items()}
        if isinstance(array, np.ndarray) and np.issubdtype(array.dtype, np.floating):
            return array.astype(dtype)
        return array

    return {n: cast(a) for n, a in state.items()}, [(cast(x), cast(y)) for x, y in batches]


def _check(spec: Spec, optimizer: OptimizerSpec, batches: list) -> None:
    require_optimizer_spec(optimizer)
    if spec.deterministic() != spec:
        raise InputError(f"{spec.architecture}: expected every dropout-like rate 0 for a trajectory (the "
                         f"frameworks' random streams differ; use spec.deterministic()), got {spec.stochastic_rates()}")
    if not batches:
        raise InputError("batches: expected a non-empty list of (inputs, targets), got none")
    check_schedule_covers(optimizer, len(batches))


def _check_optimizer_state(optimizer: OptimizerSpec, spec: Spec, optimizer_state: dict) -> dict:
    return check_entries(state_layout(optimizer, spec), optimizer_state, f"{optimizer.name} optimizer state")


def _setup(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches, dtype, optimizer_state=None,
           frozen=(), batch_norm="frozen"):
    """Validate a training run; (native model, native optimizer, impl module, batches in `dtype`)."""
    batches = list(batches)
    _check(spec, optimizer, batches)
    frozen, norms = check_frozen(spec, frozen, batch_norm)
    state, batches = _as_dtype(state, batches, dtype)
    impl = _optimizers(framework)
    model = impl_module(framework, "transfer").freeze(build(framework, spec, state), frozen, norms)
    native = impl.build_optimizer(model, optimizer)
    if optimizer_state is not None:
        _check_optimizer_state(optimizer, spec, optimizer_state)
        impl.load_optimizer_state(model, native, optimizer, optimizer_state)
    return model, native, impl, batches


def _run(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches, dtype, optimizer_state,
         frozen=(), batch_norm="frozen"):
    """Yield (the step's loss, model, native optimizer, impl module) after each native training
    step; the loss is at the weights before the step's update."""
    model, native, impl, batches = _setup(framework, spec, state, optimizer, batches, dtype, optimizer_state,
                                          frozen, batch_norm)
    for inputs, targets in batches:
        loss, grads = loss_and_grads(framework, model, inputs, targets, train=True)
        impl.apply_gradients(model, native, grads)
        yield loss, model, native, impl


def train_trajectory(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches,
                     dtype: str | None = None, optimizer_state: dict | None = None, *, frozen=(),
                     batch_norm: str = "frozen", devices: int | None = None,
                     sync_batch_norm: bool = False) -> list[dict[str, np.ndarray]]:
    """Train a native model from `state` with the native optimizer, one step per (inputs, targets)
    batch, in training mode (batch norm on batch statistics); the canonical state after each step.
    `optimizer_state` (canonical, see `parity.optimizers.state_layout`) resumes an optimizer.
    `frozen` parameters (e.g. `parity.transfer(...).frozen`) are frozen natively and `batch_norm`
    says what a frozen batch norm does (see parity.transfer).

    `devices=N` splits every batch over N data-parallel replicas on the framework's own engine, in
    subprocesses (`parity.distributed`); batch norm then uses each replica's own statistics unless
    `sync_batch_norm`."""
    if devices is not None:
        from parity.distributed import train_trajectory as data_parallel

        if optimizer_state is not None or frozen:
            raise InputError("optimizer_state, frozen: data-parallel runs start a fresh optimizer on every "
                             "parameter; expected neither, or a single-device run (devices=None)")
        return data_parallel(framework, spec, state, optimizer, batches, dtype, devices=devices,
                             sync_batch_norm=sync_batch_norm)
    if sync_batch_norm:
        raise InputError("sync_batch_norm: synchronizes replicas; expected devices=N with it")
    return [export_state(framework, model) for _, model, _, _ in _run(framework, spec, state, optimizer, batches,
                                                                   dtype, optimizer_state, frozen, batch_norm)]


def train_steps(framework: str, spec: Spec, state: dict, optimizer: OptimizerSpec, batches,
                optimizer_state: dict | None = None, dtype: str | None = None) -> tuple[dict, dict]:
    """Train from a (model state, optimizer state) pair and return the final pair, both canonical:
    what a checkpoint holds, and what another framework can resume from."""
    for _, model, native, impl in _run(framework, spec, state, optimizer, batches, dtype, optimizer_state):
        pass  # _run refuses an empty batch list, so the loop binds all three
    return export_state(framework, model), impl.export_optimizer_state(model, native, optimizer)


def save_checkpoint(path, spec: Spec, optimizer: OptimizerSpec, state: dict, optimizer_state: dict):
    """One safetensors file with the model and optimizer states, both specs in the metadata,
    validated first and written atomically."""
    check_state(spec, state)
    _check_optimizer_state(optimizer, spec, optimizer_state)
    return save_state(path, {**state, **optimizer_state},
                      metadata={SPEC_KEY: json.dumps(spec.to_dict()),
                                _OPTIMIZER_KEY: json.dumps(dataclasses.asdict(optimizer))})


def load_checkpoint(path, spec: Spec | None = None, optimizer: OptimizerSpec | None = None):
    """(spec, optimizer, model state, optimizer state) from `save_checkpoint`'s file. Given `spec`
    or `optimizer`, the checkpoint must have been made for exactly those."""
    stored_spec = read_spec(path)
    metadata = read_metadata(path)
    if stored_spec is None or _OPTIMIZER_KEY not in metadata:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a training checkpoint (spec and optimizer "
                              f"in its metadata), got metadata keys {sorted(metadata)}")
    stored_optimizer = OptimizerSpec(**json.loads(metadata[_OPTIMIZER_KEY]))
    for given, stored, what in ((spec, stored_spec, "model spec"), (optimizer, stored_optimizer, "optimizer")):
        if given is not None and given != stored:
            raise CheckpointError(f"checkpoint {str(path)!r} was made for {what} {stored}, not {given}")
    tensors = read_tensors(path)
    model_names = layout(stored_spec)
    state = check_state(stored_spec, {n: v for n, v in tensors.items() if n in model_names})
    optimizer_state = _check_optimizer_state(stored_optimizer, stored_spec,
                                             {n: v for n, v in tensors.items() if n not in model_names})
    return stored_spec, stored_optimizer, state, optimizer_state


def reference_trajectory(spec: Spec, state: dict, optimizer: OptimizerSpec, batches,
                         dtype: str | None = None) -> list[dict[str, np.ndarray]]:
    """The same trajectory with the numpy reference rule: torch gives each step's gradients and
    updated batch-norm buffers at the reference's own parameters, numpy does the update."""
    batches = list(batches)
    _check(spec, optimizer, batches)
    state, batches = _as_dtype(state, batches, dtype)
    trainable = [name for name, param in layout(spec).items() if param.trainable]
    model = build("torch", spec, state)
    slots, states = {}, []
    for step, (inputs, targets) in enumerate(batches):
        _, grads = loss_and_grads("torch", model, inputs, targets, train=True)
        buffers = export_state("torch", model)  # the forward pass updated the batch-norm buffers
        params, slots = reference_step(optimizer, {n: state[n] for n in trainable}, grads, slots, step)
        state = {name: params.get(name, buffers[name]) for name in buffers}
        load_state("torch", model, state)
        states.append(state)
    return states
