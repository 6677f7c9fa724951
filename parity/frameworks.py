"""Dispatch to the three framework adapters by name, validating everything first.

Adapters (`pytorch_impl.api`, `keras_impl.api`, `jax_impl.api`) are imported lazily, so
`import parity` loads no framework. Every function here checks its inputs before an adapter
sees them: a bad state or input raises a `parity` error naming expected vs given, and never
leaves a half-loaded model.
"""
from __future__ import annotations

import importlib

import numpy as np

from parity.errors import FrameworkError, InputError, StateError
from parity.specs import Spec
from parity.state import check_state, init_state, state_dtype

FRAMEWORKS = ("torch", "keras", "jax")
_PACKAGES = {"torch": "pytorch_impl", "keras": "keras_impl", "jax": "jax_impl"}


def impl_module(framework: str, name: str):
    """A mirrored module of a framework's implementation package, e.g. ("jax", "export") ->
    jax_impl.export, imported on first use."""
    if framework not in _PACKAGES:
        raise FrameworkError(f"unknown framework {framework!r}; expected one of {list(FRAMEWORKS)}")
    return importlib.import_module(f"{_PACKAGES[framework]}.{name}")


def adapter(framework: str):
    """The adapter module (`<impl>.api`) of a framework name."""
    return impl_module(framework, "api")


def set_deterministic(frameworks=FRAMEWORKS) -> None:
    """TF32 off everywhere and full-precision JAX matmuls: the settings parity checks assume."""
    for framework in frameworks:
        adapter(framework).set_deterministic()


def build(framework: str, spec: Spec, state: dict | None = None, *, dtype: str | None = None, seed: int = 0):
    """A native model of `spec` (nn.Module / keras.Model / nnx.Module) holding `state`.

    Without a state, `parity.init_state(spec, seed, dtype)` is loaded, so every framework starts
    from the same bits. With one, the model's dtype is the state's.
    """
    api = adapter(framework)
    if not isinstance(spec, Spec):
        raise InputError(f"build: expected a parity spec (see parity.spec), got {type(spec).__name__}")
    if state is None:
        state = init_state(spec, seed, dtype or "float32")
    state = check_state(spec, state)
    if dtype is not None and dtype != state_dtype(state):
        raise StateError([f"dtype: build asked for {dtype}, the state given is {state_dtype(state)}"])
    model = api.build(spec, state_dtype(state))
    return api.load_state(model, state)


def load_state(framework: str, model, state: dict):
    """Load a canonical state into an existing model (validated first: all or nothing)."""
    api = adapter(framework)
    state = check_state(model.spec, state)
    if state_dtype(state) != api.dtype_of(model):
        raise StateError([f"dtype: the model computes in {api.dtype_of(model)}, the state is "
                          f"{state_dtype(state)}; build a new model from this state instead"])
    return api.load_state(model, state)


def export_state(framework: str, model) -> dict[str, np.ndarray]:
    """The model's parameters and buffers as a canonical state (exact inverse of load_state)."""
    return adapter(framework).export_state(model)


def _check_array(spec: Spec, what: str, value, dtype: str, expected: tuple, layout: str) -> np.ndarray:
    """`value` is a finite numpy array of `dtype` and shape `expected` ("B", "T" and ints)."""
    if not isinstance(value, np.ndarray):
        raise InputError(f"{spec.architecture} {what}: expected a numpy array, got {type(value).__name__}")
    fixed = [(i, size) for i, size in enumerate(expected) if isinstance(size, int)]
    if value.ndim != len(expected) or any(value.shape[i] != size for i, size in fixed) or 0 in value.shape:
        raise InputError(f"{spec.architecture} {what}: expected shape {tuple(expected)} {layout}, got {value.shape}")
    if value.dtype != np.dtype(dtype):
        raise InputError(f"{spec.architecture} {what}: expected dtype {dtype} (the model's), got {value.dtype}")
    if not np.all(np.isfinite(value)):
        raise InputError(f"{spec.architecture} {what}: expected finite values, got NaN/inf")
    return np.ascontiguousarray(value)


def _check_class_indices(spec: Spec, what: str, value, shape: tuple, classes: int, meaning: str) -> np.ndarray:
    """Integer indices of shape `shape`, each in [0, classes)."""
    if not isinstance(value, np.ndarray) or value.shape != shape or not np.issubdtype(value.dtype, np.integer):
        raise InputError(f"{spec.architecture} {what}: expected integer {meaning} of shape {shape}, "
                         f"got {getattr(value, 'dtype', type(value).__name__)} {np.shape(value)}")
    if value.size and (value.min() < 0 or value.max() >= classes):
        raise InputError(f"{spec.architecture} {what}: expected {meaning} in [0, {classes}), "
                         f"got values in [{value.min()}, {value.max()}]")
    return value.astype(np.int64)


def _vocabulary(spec: Spec, name: str) -> tuple[int, str]:
    """(size, meaning) of the ids of a token input: an encoder-decoder reads source ids (`tokens`)
    and target ids (`decoder_tokens`), a language model one vocabulary."""
    if name == "decoder_tokens":
        return spec.target_vocab_size, "token ids (the target vocabulary)"
    if hasattr(spec, "source_vocab_size"):
        return spec.source_vocab_size, "token ids (the source vocabulary)"
    return spec.vocab_size, "token ids (the vocabulary)"


def _check_token_ids(spec: Spec, what: str, value, batch: int | None, vocab: int, meaning: str) -> np.ndarray:
    """Integer ids of shape (B, T), B = `batch` where given, each in [0, vocab)."""
    if (not isinstance(value, np.ndarray) or value.ndim != 2 or 0 in value.shape
            or (batch is not None and value.shape[0] != batch)):
        expected = ("B" if batch is None else batch, "T")
        raise InputError(f"{spec.architecture} {what}: expected integer token ids of shape {expected}, "
                         f"got {getattr(value, 'dtype', type(value).__name__)} {np.shape(value)}")
    return _check_class_indices(spec, what, value, value.shape, vocab, meaning)


def _check_sequence_inputs(spec: Spec, dtype: str, inputs: dict) -> dict[str, np.ndarray]:
    """A recurrent model's named inputs: `sequence` (B, T, F) or `tokens` (B, T) ids in the
    vocabulary (an encoder-decoder's source vocabulary), and optionally `lengths` (B,) in [1, T],
    initial states (num_layers * directions, B, hidden) and an encoder-decoder's `decoder_tokens`
    (B, T_decoder) ids in its target vocabulary."""
    main = inputs[spec.input_kind]
    if spec.input_kind == "tokens":
        main = _check_token_ids(spec, "inputs['tokens']", main, None, *_vocabulary(spec, "tokens"))
    else:
        main = _check_array(spec, "inputs['sequence']", main, dtype, ("B", "T", spec.input_size),
                            "(batch, time, features), batch first")
    batch, steps = main.shape[:2]
    checked = {spec.input_kind: main}
    if inputs.get("lengths") is not None:
        lengths = inputs["lengths"]
        if not isinstance(lengths, np.ndarray) or lengths.shape != (batch,) or not np.issubdtype(
                lengths.dtype, np.integer):
            raise InputError(f"{spec.architecture} inputs['lengths']: expected integers of shape ({batch},), "
                             f"got {getattr(lengths, 'dtype', type(lengths).__name__)} {np.shape(lengths)}")
        if lengths.min() < 1 or lengths.max() > steps:
            raise InputError(f"{spec.architecture} inputs['lengths']: expected every length in [1, {steps}] "
                             f"(the sequence has {steps} steps), got values in [{lengths.min()}, {lengths.max()}]")
        checked["lengths"] = lengths.astype(np.int64)
    if inputs.get("decoder_tokens") is not None:
        checked["decoder_tokens"] = _check_token_ids(spec, "inputs['decoder_tokens']", inputs["decoder_tokens"],
                                                     batch, *_vocabulary(spec, "decoder_tokens"))
    for name in (n for n in spec.optional_inputs if n.endswith("_0")):
        if inputs.get(name) is not None:
            layers, hidden = spec.state_shape
            checked[name] = _check_array(spec, f"inputs[{name!r}]", inputs[name], dtype, (layers, batch, hidden),
                                         "(num_layers * directions, batch, hidden_size)")
    return checked


def _check_declared(spec: Spec, what: str, value, decl, dtype: str, axes: dict[str, int]) -> np.ndarray:
    """One input (or the targets) against its TensorDecl; binds its axis names into `axes`."""
    if not isinstance(value, np.ndarray):
        raise InputError(f"{spec.architecture} {what}: expected a numpy array, got {type(value).__name__}")
    expected = tuple(axes.get(size, size) for size in decl.shape)
    if value.ndim != len(expected) or 0 in value.shape or any(
            isinstance(size, int) and value.shape[i] != size for i, size in enumerate(expected)):
        names = " ".join(f"{n}={axes[n]}" for n in decl.shape if isinstance(n, str) and n in axes)
        raise InputError(f"{spec.architecture} {what}: expected shape {tuple(decl.shape)}"
                         f"{f' with {names}' if names else ''}, got {value.shape}")
    limits = spec.axis_limits()
    for name, size in zip(decl.shape, value.shape):
        if isinstance(name, str) and name in limits:
            limit, field = limits[name]
            if size > limit:
                raise InputError(f"{spec.architecture} {what}: expected at most {limit} along {name} "
                                 f"({field}), got {size}")
        if isinstance(name, str):
            axes[name] = size
    if decl.dtype == "float":
        if value.dtype != np.dtype(dtype):
            raise InputError(f"{spec.architecture} {what}: expected dtype {dtype} (the model's), got {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise InputError(f"{spec.architecture} {what}: expected finite values, got NaN/inf")
        return np.ascontiguousarray(value)
    if decl.dtype == "bool":
        if value.dtype != np.bool_:
            raise InputError(f"{spec.architecture} {what}: expected a bool mask ({decl.meaning}), got {value.dtype}")
        return np.ascontiguousarray(value)
    if not (np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_):
        raise InputError(f"{spec.architecture} {what}: expected integer {decl.meaning or 'values'}, got {value.dtype}")
    low, high = (0, 2) if decl.dtype == "mask" else (decl.low, decl.high)
    counted = value if decl.ignore_index is None else value[value != decl.ignore_index]
    if counted.size and (counted.min() < low or (high is not None and counted.max() >= high)):
        also = "" if decl.ignore_index is None else f" or {decl.ignore_index} (ignored)"
        raise InputError(f"{spec.architecture} {what}: expected {decl.meaning or 'values'} in [{low}, {high}){also}, "
                         f"got values in [{counted.min()}, {counted.max()}]")
    return value.astype(np.int64)


def _check_declared_inputs(spec: Spec, dtype: str, inputs) -> dict[str, np.ndarray]:
    """Inputs of a spec that declares them: every given one checked, axis names bound across them."""
    declared = spec.declared_inputs()
    if not isinstance(inputs, dict):
        inputs = {spec.input_kind: inputs}
    required = [n for i, (n, d) in enumerate(declared.items()) if i == 0 or d.required]
    unknown = [k for k in inputs if k not in declared]
    missing = [n for n in required if inputs.get(n) is None]
    if unknown or missing:
        raise InputError(f"{spec.architecture} inputs: expected a dict with the key(s) {required} and optionally "
                         f"{[n for n in declared if n not in required]}, got keys {list(inputs)}"
                         f"{f' (missing {missing})' if missing else ''}")
    axes: dict[str, int] = {}
    return {name: _check_declared(spec, f"inputs[{name!r}]", inputs[name], decl, dtype, axes)
            for name, decl in declared.items() if inputs.get(name) is not None}


def _check_inputs(spec: Spec, dtype: str, inputs):
    """Validated inputs: one array, or for specs with optional inputs a dict of named arrays."""
    if spec.declared_inputs() is not None:
        return _check_declared_inputs(spec, dtype, inputs)
    names = (spec.input_kind, *spec.optional_inputs)
    if spec.optional_inputs and not isinstance(inputs, dict):
        inputs = {spec.input_kind: inputs}
    if isinstance(inputs, dict):  # named inputs, the main one keyed by its kind
        unknown = [k for k in inputs if k not in names]
        if spec.input_kind not in inputs or unknown:
            raise InputError(f"{spec.architecture} inputs: expected a dict with the key {spec.input_kind!r}"
                             f"{f' and optionally {list(spec.optional_inputs)}' if spec.optional_inputs else ''} "
                             f"(or a bare array), got keys {list(inputs)}")
        if spec.input_kind in ("sequence", "tokens"):
            return _check_sequence_inputs(spec, dtype, inputs)
        inputs = inputs[spec.input_kind]
    layout = "(B, C, H, W), channels first" if spec.input_kind == "image" else "(B, features)"
    return _check_array(spec, "inputs", inputs, dtype, ("B", *spec.input_shape), layout)


def batch_size_of(spec: Spec, inputs) -> int:
    """The batch size of validated inputs."""
    return (inputs[spec.input_kind] if isinstance(inputs, dict) else inputs).shape[0]


def _check_batch_norm_batch(spec: Spec, inputs, train: bool) -> None:
    if train and spec.has_batch_norm and batch_size_of(spec, inputs) < 2:
        raise InputError(f"{spec.architecture}: training-mode batch norm needs a batch of at least 2 "
                         f"(the unbiased variance of B values at a 1x1 position divides by B - 1), "
                         f"got B = {batch_size_of(spec, inputs)}")


def forward(framework: str, model, inputs, *, train: bool = False, rng: int | None = None, trace: bool = False):
    """Outputs (dict of numpy, e.g. `logits`) for canonical inputs; with `trace=True`, returns
    `(outputs, trace)` where trace maps canonical module paths to their outputs."""
    api = adapter(framework)
    inputs = _check_inputs(model.spec, api.dtype_of(model), inputs)
    _check_batch_norm_batch(model.spec, inputs, train)
    result = api.forward(model, inputs, train=train, rng=rng, trace=trace)
    outputs, records = result if trace else (result, None)
    # The spec's order: jax.jit hands dicts back with their keys sorted ("h_n" before "output").
    outputs = {name: outputs[name] for name in model.spec.output_names}
    return (outputs, records) if trace else outputs


def _check_targets(spec: Spec, dtype: str, targets, inputs) -> np.ndarray:
    if not isinstance(targets, np.ndarray):
        raise InputError(f"{spec.architecture} targets: expected a numpy array, got {type(targets).__name__}")
    batch = batch_size_of(spec, inputs)
    if spec.declared_inputs() is not None:  # the targets' axes are named like the inputs'
        axes = {"B": batch}
        for name, decl in spec.declared_inputs().items():
            if name in inputs:
                axes.update((axis, size) for axis, size in zip(decl.shape, inputs[name].shape) if isinstance(axis, str))
        return _check_declared(spec, "targets", targets, spec.declared_targets(), dtype, axes)
    if spec.loss == "mse":  # a target for every element of the output the loss reads
        steps = inputs["sequence"].shape[1]
        return _check_array(spec, "targets", targets, dtype, (batch, steps, spec.directions * spec.hidden_size),
                            f"(batch, time, directions * hidden_size), like {spec.loss_output!r}")
    if spec.loss == "cross_entropy":  # a class per example, or per step of a token sequence
        if "decoder_tokens" in spec.optional_inputs:  # an encoder-decoder: a target id per decoder step
            decoder_tokens = inputs.get("decoder_tokens")
            shape = (batch, spec.target_len) if decoder_tokens is None else decoder_tokens.shape
        else:
            shape = inputs["tokens"].shape if spec.input_kind == "tokens" else (batch,)
        return _check_class_indices(spec, "targets", targets, shape, spec.num_classes, "class indices")
    if targets.shape != (batch, 1) or targets.dtype != np.dtype(dtype):
        raise InputError(f"{spec.architecture} targets: expected {dtype} 0/1 labels of shape ({batch}, 1), "
                         f"got {targets.dtype} {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() > 1):
        raise InputError(f"{spec.architecture} targets: expected values in [0, 1], "
                         f"got values in [{targets.min()}, {targets.max()}]")
    return np.ascontiguousarray(targets)


def loss_and_grads(framework: str, model, inputs, targets, *, train: bool = False):
    """(mean loss, gradient of every trainable parameter as a canonical state) for the spec's
    loss: cross-entropy on `logits` for classifiers, binary cross-entropy for the perceptron,
    mean squared error of `output` for the recurrent layers."""
    api = adapter(framework)
    dtype = api.dtype_of(model)
    inputs = _check_inputs(model.spec, dtype, inputs)
    _check_batch_norm_batch(model.spec, inputs, train)
    targets = _check_targets(model.spec, dtype, targets, inputs)
    return api.loss_and_grads(model, inputs, targets, train=train)
