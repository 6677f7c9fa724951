"""The adapter parity's core dispatches to for framework "jax" (Flax NNX + optax).

Inputs and outputs are numpy in the canonical layout; conversions come from `parity.layouts`.
A float64 model computes under `jax.enable_x64(True)`: outside it JAX silently uses float32.
"""
import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from parity import layouts
from parity.specs.base import IGNORE_INDEX
from parity.state import layout, match_native_names
from jax_impl.models import MODELS

FRAMEWORK = "jax"


def set_deterministic():
    """Full-precision float32 matmuls/convolutions (XLA may otherwise use bf16/TF32 passes)."""
    jax.config.update("jax_default_matmul_precision", "highest")


def _precision(dtype: str):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def build(spec, dtype="float32"):
    """The native model with every parameter and statistic zero, for `load_state` to fill.

    Built abstractly (nnx.eval_shape): Flax's initializers would compile one XLA truncated-normal
    per kernel shape, about a second each on CPU (27 s for the tiny EfficientNet), for values the
    canonical state overwrites. The only other state a model keeps is its dropout streams' keys.
    """
    with _precision(dtype):
        model = nnx.eval_shape(lambda: MODELS[spec.architecture](spec, jnp.dtype(dtype),
                                                                 rngs=nnx.Rngs(params=0, dropout=0)))
        nnx.reseed(model, dropout=0)
        for _, variable in nnx.iter_graph(model):
            if isinstance(variable, (nnx.Param, nnx.BatchStat)):
                variable.set_value(jnp.asarray(np.zeros(variable.shape, variable.dtype)))
    model.eval()
    return model


def dtype_of(model) -> str:
    return next(v for _, v in _named_variables(model).items() if jnp.issubdtype(v.dtype, jnp.floating)).dtype.name


def _named_variables(model):
    """Canonical name -> nnx Variable, for every Param and BatchStat."""
    return {layouts.canonical_name(FRAMEWORK, path): node for path, node in nnx.iter_graph(model)
            if isinstance(node, (nnx.Param, nnx.BatchStat))}


def load_state(model, state):
    entries = layout(model.spec)
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    values = {name: layouts.to_native(FRAMEWORK, p.kind, state[name], p.meta) for name, p in entries.items()}
    with _precision(dtype_of(model)):
        for name, variable in native.items():
            variable[...] = jnp.asarray(values[name], dtype=variable.dtype)
    return model


def export_state(model):
    entries = layout(model.spec)
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    dtype = dtype_of(model)
    return {name: layouts.from_native(FRAMEWORK, p.kind, np.asarray(native[name][...]), p.meta).astype(
        dtype if p.dtype == "float" else p.dtype) for name, p in entries.items()}


def _to_numpy(tree, input_kind):
    return {name: layouts.activation_from_native(FRAMEWORK, np.asarray(value), input_kind)
            for name, value in tree.items()}


def _native_inputs(spec, inputs):
    """Canonical numpy inputs (one array, or named arrays) -> (main input, keyword inputs) in the
    framework's layout."""
    named = {name: jnp.asarray(layouts.activation_to_native(FRAMEWORK, value, spec.input_kind)) for name, value in (
        inputs if isinstance(inputs, dict) else {spec.input_kind: inputs}).items()}
    return named.pop(spec.input_kind), named


def _set_mode(model, train):
    """model.train() or model.eval(), with the batch norm `jax_impl.transfer.freeze` keeps on its
    running statistics set back: model.train() sets use_running_average=False on every module."""
    model.train() if train else model.eval()
    norms = set(getattr(model, "frozen_norms", ()))
    if train and norms:
        model.set_attributes(lambda path, _: ".".join(map(str, path)) in norms, use_running_average=True)


@nnx.jit
def _call(model, x, extra):
    """The forward pass compiled as one program: op by op, JAX compiles every primitive for every
    new shape (DenseNet's growing concatenations: 35 s for DenseNet-121 at 64x64)."""
    return model(x, **extra)


def forward(model, inputs, *, train=False, rng=None, trace=False):
    """Run the model on canonical numpy inputs; with `trace`, also every submodule's output."""
    if rng is not None:
        nnx.reseed(model, dropout=rng)
    _set_mode(model, train)
    try:
        with _precision(dtype_of(model)):
            x, extra = _native_inputs(model.spec, inputs)
            if trace:
                # nnx.capture sows every submodule method's output as an Intermediate.
                outputs, intermediates = nnx.capture(model, nnx.Intermediate,
                                                     method_outputs=nnx.Intermediate)(x, **extra)
                # Array outputs only, as torch's hooks and Keras's recorder keep: not a recurrent
                # stack's dict of outputs or an attention's (context, weights) pair.
                records = {".".join(str(p) for p in path[:-1]): value.get_value()[-1]
                           for path, value in nnx.to_flat_state(intermediates)
                           if path[-1] == "__call__" and len(path) > 1 and isinstance(value.get_value()[-1], jax.Array)}
            else:
                outputs = _call(model, x, extra)
            outputs = _to_numpy(outputs, model.spec.input_kind)
    finally:
        model.eval()
    return (outputs, _to_numpy(records, model.spec.input_kind)) if trace else outputs


@nnx.jit
def _encode(model, tokens, lengths):
    """model.encode compiled: one program per source shape (op by op, every primitive compiles)."""
    return model.encode(tokens, lengths)


@nnx.jit
def _decode_step(model, previous_ids, state, memory, mask):
    """model.decode_step compiled: the decoders keep the row count fixed, so it compiles once."""
    return model.decode_step(previous_ids, state, memory, mask)


def decoder(model, inputs):
    """The encoder-decoder `model` as parity.decoding wants it: (initial_state, step) for validated
    canonical inputs {"tokens", optional "lengths"}. initial_state = (memory, mask, *model state),
    numpy arrays rows-first (all of them gathered by the beam search); step(previous_ids, state)
    -> (logits, attention, new_state) runs `model.decode_step` once in eval mode, compiled, on
    arrays of the model's dtype (float64 under jax.enable_x64)."""
    _set_mode(model, False)
    precision = dtype_of(model)

    def numpy(array):
        return np.asarray(array)

    with _precision(precision):
        memory, mask, state = _encode(model, jnp.asarray(inputs["tokens"]),
                                      None if inputs.get("lengths") is None else jnp.asarray(inputs["lengths"]))
        initial_state = (numpy(memory), numpy(mask), *(numpy(s) for s in state))

    def step(previous_ids, state):
        with _precision(precision):
            memory, mask, *rest = state  # handed back as they came: the decoders gather them
            logits, attention, rest = _decode_step(model, jnp.asarray(previous_ids), tuple(jnp.asarray(s) for s in rest),
                                                   jnp.asarray(memory), jnp.asarray(mask))
            return numpy(logits), numpy(attention), (memory, mask, *(numpy(s) for s in rest))

    return initial_state, step


DECODE_TRACES = []  # the input shape of every trace of _decode: one per compiled program


@nnx.jit
def _decode(model, ids, cache, position):
    """model.decode compiled: `position` is traced and the buffers keep their shape, so every
    one-id step reuses one program (appending to DECODE_TRACES happens only while tracing)."""
    DECODE_TRACES.append(ids.shape)
    return model.decode(ids, cache, position)


def generator(model, kept, ids_name, batch, max_length, use_cache):
    """parity.generation's next_logits(ids (B, t)) -> logits (B, V) of the last position, for
    validated canonical inputs `kept` (all but the ids that grow, `ids_name`, and their mask).
    Without the cache: the forward pass over every id so far (the decoder's ids of an
    encoder-decoder, which reads `kept` again). With it: `model.decode` on
    the ids not fed yet, at their positions, into `model.init_cache`'s buffers of `max_length`
    slots, compiled once per fed length (`_decode`; DECODE_TRACES counts the traces). init_cache
    gets `kept` too (an encoder-decoder encodes it once, op by op)."""
    if not use_cache:
        return lambda ids: forward(model, {**kept, ids_name: ids})["logits"][:, -1]
    _set_mode(model, False)
    with _precision(dtype_of(model)):
        cache = model.init_cache(batch, max_length, **{name: jnp.asarray(value) for name, value in kept.items()})
    fed = 0

    def next_logits(ids):
        nonlocal cache, fed
        with _precision(dtype_of(model)):
            logits, cache = _decode(model, jnp.asarray(ids[:, fed:]), cache, jnp.asarray(fed))  # (B, t, V)
            fed = ids.shape[1]
            return np.asarray(logits[:, -1])

    return next_logits


def _masked_cross_entropy(logits, targets):
    counted = targets != IGNORE_INDEX
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(counted, targets, 0))
    return jnp.sum(jnp.where(counted, losses, 0)) / jnp.sum(counted)


def loss_function(kind, dtype):
    """The spec's loss, mean over the batch: fn(logits, targets) -> scalar."""
    if kind == "cross_entropy":
        return lambda logits, targets: optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
    if kind == "masked_cross_entropy":  # the mean over the targets that are not IGNORE_INDEX
        return _masked_cross_entropy
    if kind == "mse":
        return lambda prediction, targets: jnp.mean(optax.squared_error(prediction, targets))
    return lambda logits, targets: optax.sigmoid_binary_cross_entropy(logits, targets).mean()


@nnx.jit(static_argnames=("kind", "output"))
def _value_and_grad(model, x, extra, y, kind, output):
    """Compiled once per model structure, mode and batch shape: run op by op, JAX compiles every
    primitive of the forward and backward pass separately (16 s for a tiny ResNet-50 step)."""
    loss = loss_function(kind, x.dtype)
    return nnx.value_and_grad(lambda model: loss(model(x, **extra)[output], y))(model)


def loss_and_grads(model, inputs, targets, *, train=False):
    """Mean loss of the spec's kind and its gradient w.r.t. every parameter, canonical names."""
    _set_mode(model, train)
    entries = layout(model.spec)
    try:
        with _precision(dtype_of(model)):
            x, extra = _native_inputs(model.spec, inputs)
            y = jnp.asarray(targets)
            value, grads = _value_and_grad(model, x, extra, y, model.spec.loss, model.spec.loss_output)
            named = {layouts.canonical_name(FRAMEWORK, path): np.asarray(g[...]) for path, g in nnx.to_flat_state(grads)}
    finally:
        model.eval()
    return float(value), {name: layouts.from_native(FRAMEWORK, p.kind, named[name], p.meta)
                         for name, p in entries.items() if p.trainable}
