"""The adapter parity's core dispatches to for framework "keras" (Keras 3, TensorFlow backend).

Inputs and outputs are numpy in the canonical layout; conversions come from `parity.layouts`.
"""
import contextlib

import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import numpy as np
import tensorflow as tf

from parity import layouts
from parity.compare import example_batch
from parity.specs.base import IGNORE_INDEX
from parity.state import layout, match_native_names
from keras_impl.models import MODELS

FRAMEWORK = "keras"


def set_deterministic():
    """Full-precision float32 matmuls/convolutions (no TF32 on GPUs that have it)."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


def build(spec, dtype="float32"):
    model = MODELS[spec.architecture](spec, dtype)
    if spec.declared_inputs() is not None:  # named inputs: one example with every one of them
        x, extra = _native_inputs(spec, example_batch(spec, 1, dtype=dtype)[0])
        model(x, **extra)  # creates variables
    else:
        model(layouts.activation_to_native(FRAMEWORK, np.zeros((1, *spec.input_shape), dtype), spec.input_kind))
    return model


def dtype_of(model) -> str:
    return model.dtype_policy.variable_dtype


def _named_layers(layer, prefix=""):
    """(canonical path, layer) for every sublayer reachable through public attributes."""
    for attr, value in vars(layer).items():
        if attr.startswith("_"):
            continue
        children = ([(f"{attr}.{i}", v) for i, v in enumerate(value)] if isinstance(value, (list, tuple))
                    else [(attr, value)])
        for name, child in children:
            if isinstance(child, keras.layers.Layer):
                yield prefix + name, child
                yield from _named_layers(child, f"{prefix}{name}.")


def _named_variables(model):
    """Canonical name -> keras Variable, for the variables each layer owns directly (the model's
    own too: `mha` holds torch.nn.MultiheadAttention's `in_proj_weight` at the top level)."""
    named = {}
    for path, layer in [("", model), *_named_layers(model)]:
        owned = {id(v) for _, child in _named_layers(layer) for v in child.weights}
        for variable in layer.weights:
            if id(variable) not in owned:
                modules = path.split(".") if path else ()
                named[layouts.canonical_name(FRAMEWORK, (*modules, variable.name))] = variable
    return named


def load_state(model, state):
    entries = layout(model.spec)
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    values = {name: layouts.to_native(FRAMEWORK, p.kind, state[name], p.meta) for name, p in entries.items()}
    for name, variable in native.items():
        variable.assign(values[name])
    return model


def export_state(model):
    entries = layout(model.spec)
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    dtype = dtype_of(model)
    return {name: layouts.from_native(FRAMEWORK, p.kind, np.asarray(native[name].numpy()), p.meta).astype(
        dtype if p.dtype == "float" else p.dtype) for name, p in entries.items()}


@contextlib.contextmanager
def _recording(model, records):
    """Record every named sublayer's output by wrapping its `call` on the instance (Keras 3 has
    no forward hooks); the class's `call` is back in place afterwards."""
    layers = list(_named_layers(model))

    def recorder(name, call):
        def recording_call(*args, **kwargs):
            output = call(*args, **kwargs)
            if keras.ops.is_tensor(output):  # not a recurrent cell's (h, states) step or a dict of outputs
                records[name] = output
            return output
        return recording_call

    for name, layer in layers:
        vars(layer)["call"] = recorder(name, layer.call)
    try:
        yield
    finally:
        for _, layer in layers:
            vars(layer).pop("call", None)


def _to_numpy(tree, input_kind):
    return {name: layouts.activation_from_native(FRAMEWORK, np.asarray(value), input_kind)
            for name, value in tree.items()}


def _native_inputs(spec, inputs):
    """Canonical numpy inputs (one array, or named arrays) -> (main input, keyword inputs) in the
    framework's layout."""
    named = {name: layouts.activation_to_native(FRAMEWORK, value, spec.input_kind) for name, value in (
        inputs if isinstance(inputs, dict) else {spec.input_kind: inputs}).items()}
    return named.pop(spec.input_kind), named


def forward(model, inputs, *, train=False, rng=None, trace=False):
    """Run the model on canonical numpy inputs; with `trace`, also every sublayer's output."""
    if rng is not None:
        keras.utils.set_random_seed(rng)
    x, extra = _native_inputs(model.spec, inputs)
    records = {}
    with _recording(model, records) if trace else contextlib.nullcontext():
        outputs = model(x, training=train, **extra)
    outputs = _to_numpy(outputs, model.spec.input_kind)
    return (outputs, _to_numpy(records, model.spec.input_kind)) if trace else outputs


def decoder(model, inputs):
    """The encoder-decoder `model` as parity.decoding wants it: (initial_state, step) for validated
    canonical inputs {"tokens", optional "lengths"}. initial_state = (memory, mask, *model state),
    numpy arrays rows-first (all of them gathered by the beam search); step(previous_ids, state)
    -> (logits, attention, new_state) runs `model.decode_step` once, eagerly (decode_step takes no
    `training`: it is always inference), on tensors of the model's dtype."""

    def native(array):
        return keras.ops.convert_to_tensor(array)

    def numpy(tensor):
        return np.asarray(tensor)

    memory, mask, state = model.encode(native(inputs["tokens"]),
                                       None if inputs.get("lengths") is None else native(inputs["lengths"]))
    initial_state = (numpy(memory), numpy(mask), *(numpy(s) for s in state))

    def step(previous_ids, state):
        memory, mask, *rest = state  # handed back as they came: the decoders gather them
        logits, attention, rest = model.decode_step(native(previous_ids), tuple(native(s) for s in rest),
                                                    native(memory), native(mask))
        return numpy(logits), numpy(attention), (memory, mask, *(numpy(s) for s in rest))

    return initial_state, step


def generator(model, kept, ids_name, batch, max_length, use_cache):
    """parity.generation's next_logits(ids (B, t)) -> logits (B, V) of the last position, for
    validated canonical inputs `kept` (all but the ids that grow, `ids_name`, and their mask).
    Without the cache: the forward pass over every id so far (the decoder's ids of an
    encoder-decoder, which reads `kept` again). With it: `model.decode` on
    the ids not fed yet, at their positions, into `model.init_cache`'s buffers of `max_length`
    slots, compiled by XLA once per fed length (tf.function(jit_compile=True): the
    position is a tensor and the buffers keep their shape, so every one-id step reuses one
    program; `next_logits.tracing_count()` tells how many were traced). init_cache gets `kept`
    too (an encoder-decoder encodes it once, eagerly)."""
    if not use_cache:
        return lambda ids: forward(model, {**kept, ids_name: ids})["logits"][:, -1]
    decode = tf.function(model.decode, jit_compile=True)
    cache = model.init_cache(batch, max_length, **{name: tf.constant(value) for name, value in kept.items()})
    fed = 0

    def next_logits(ids):
        nonlocal cache, fed
        logits, cache = decode(tf.constant(ids[:, fed:]), cache, tf.constant(fed, tf.int64))  # (B, t, V)
        fed = ids.shape[1]
        return np.asarray(logits[:, -1])

    next_logits.tracing_count = decode.experimental_get_tracing_count
    return next_logits


def loss_function(kind, dtype):
    """The spec's loss, mean over the batch: fn(logits, targets) -> scalar."""
    # The loss's dtype must be the model's: Keras losses default to float32 and cast down.
    if kind == "cross_entropy":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=dtype)
    elif kind == "masked_cross_entropy":  # the mean over the targets that are not IGNORE_INDEX
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_INDEX, dtype=dtype)
    elif kind == "mse":
        loss = keras.losses.MeanSquaredError(dtype=dtype)
    else:
        loss = keras.losses.BinaryCrossentropy(from_logits=True, dtype=dtype)
    return lambda logits, targets: loss(targets, logits)


def loss_and_grads(model, inputs, targets, *, train=False):
    """Mean loss of the spec's kind and its gradient w.r.t. every parameter, canonical names."""
    entries = layout(model.spec)
    native = match_native_names(FRAMEWORK, model.spec, _named_variables(model))
    trainable = [name for name, p in entries.items() if p.trainable]
    loss_fn = loss_function(model.spec.loss, dtype_of(model))
    x, extra = _native_inputs(model.spec, inputs)
    with tf.GradientTape() as tape:
        loss = loss_fn(model(x, training=train, **extra)[model.spec.loss_output], targets)
    # .value, the tf.Variable: for a variable the loss never reads (BERT's pooler under a loss on
    # last_hidden_state) the tape builds zeros from the source's dtype, a str on a Keras Variable
    # (AttributeError: 'str' object has no attribute '_type_enum').
    grads = tape.gradient(loss, [native[name].value for name in trainable],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    # tf.convert_to_tensor: an embedding's gradient comes as IndexedSlices (the rows looked up).
    return float(loss), {name: layouts.from_native(FRAMEWORK, entries[name].kind, np.asarray(tf.convert_to_tensor(g)),
                                                   entries[name].meta)
                         for name, g in zip(trainable, grads)}
