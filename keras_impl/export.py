"""Keras exporters: ONNX through tf2onnx, a TensorFlow Serving SavedModel (Keras ExportArchive)
and a TFLite/LiteRT flatbuffer.

Exported graphs take canonical inputs (channels first): the serving function applies the
input permutation of `parity.layouts` before calling the channels-last model. Recurrent models
take `parity.export.input_signature`'s named inputs with a symbolic time axis, except in TFLite:
keras.layers.RNN's while loop builds TensorLists whose element shape holds the dynamic batch,
which the converter cannot lower, so for TFLite the loops are unrolled over spec.seq_len steps.
"""
import contextlib
import tempfile

import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import tensorflow as tf

from parity import layouts
from parity.export import input_signature, is_sequence, takes_named_inputs


def _serving_function(model, outputs_as_dict: bool, dynamic_time: bool = True):
    spec = model.spec
    inputs = input_signature(spec, model.dtype_policy.variable_dtype, dynamic_time)
    signature = [tf.TensorSpec([size if isinstance(size, int) else None for size in shape], dtype, name=name)
                 for name, dtype, shape in inputs]
    state_names = [name for name, _, _ in inputs[1:]]

    def outputs_of(outputs):
        if outputs_as_dict:  # SavedModel/TFLite signatures name their outputs
            return {name: outputs[name] for name in spec.output_names}
        return tuple(outputs[name] for name in spec.output_names)  # ONNX outputs are positional

    if takes_named_inputs(spec):
        @tf.function(input_signature=signature)
        def serve(x, *states):
            return outputs_of(model(x, **dict(zip(state_names, states)), training=False))
    else:
        permutation = layouts.input_permutation("keras", len(spec.input_shape) + 1, spec.input_kind)

        @tf.function(input_signature=signature)
        def serve(x):
            return outputs_of(model(x if permutation is None else keras.ops.transpose(x, permutation),
                                    training=False))

    return serve, signature


@contextlib.contextmanager
def _unrolled(model):
    """Every keras.layers.RNN of the model unrolled (a static Python loop over the steps) inside."""
    loops = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.RNN)]
    before = [loop.unroll for loop in loops]
    try:
        for loop in loops:
            loop.unroll = True
        yield
    finally:
        for loop, unroll in zip(loops, before):
            loop.unroll = unroll


def export_onnx(model, path, opset: int):
    import onnx
    import tf2onnx

    serve, signature = _serving_function(model, outputs_as_dict=False)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    onnx.save(proto, str(path))


def _archive(model, dynamic_time: bool):
    serve, signature = _serving_function(model, outputs_as_dict=True, dynamic_time=dynamic_time)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=signature)
    return archive


def export_native(model, path, format: str):
    """savedmodel: a SavedModel directory with a `serving_default` signature taking the named
    canonical inputs; tflite: the same function converted to a LiteRT flatbuffer."""
    if format == "savedmodel":
        _archive(model, dynamic_time=True).write_out(str(path), verbose=False)
        return
    # Converting from a SavedModel freezes the variables; from_concrete_functions on the live
    # model produced NaN outputs (variables left unread in the flatbuffer).
    with tempfile.TemporaryDirectory() as saved_model:
        with _unrolled(model) if is_sequence(model.spec) else contextlib.nullcontext():
            _archive(model, dynamic_time=False).write_out(saved_model, verbose=False)
        path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
