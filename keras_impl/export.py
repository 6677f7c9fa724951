"""Keras exporters: ONNX through tf2onnx, a TensorFlow Serving SavedModel (Keras ExportArchive)
and a TFLite/LiteRT flatbuffer.

Exported graphs take canonical inputs (channels first): the serving function applies the
input permutation of `parity.layouts` before calling the channels-last model.
"""
import tempfile

import keras_impl  # noqa: F401  (selects the backend before keras is imported)

import keras
import tensorflow as tf

from parity import layouts


def _serving_function(model, outputs_as_dict: bool):
    spec = model.spec
    permutation = layouts.input_permutation("keras", len(spec.input_shape) + 1, spec.input_kind)
    signature = [tf.TensorSpec((None, *spec.input_shape), model.dtype_policy.variable_dtype, name=spec.input_kind)]

    @tf.function(input_signature=signature)
    def serve(x):
        outputs = model(x if permutation is None else keras.ops.transpose(x, permutation), training=False)
        if outputs_as_dict:  # SavedModel/TFLite signatures name their outputs
            return {name: outputs[name] for name in spec.output_names}
        return tuple(outputs[name] for name in spec.output_names)  # ONNX outputs are positional

    return serve, signature


def export_onnx(model, path, opset: int):
    import onnx
    import tf2onnx

    serve, signature = _serving_function(model, outputs_as_dict=False)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    onnx.save(proto, str(path))


def export_native(model, path, format: str):
    """savedmodel: a SavedModel directory with a `serving_default` signature taking the named
    canonical input; tflite: the same function converted to a LiteRT flatbuffer."""
    serve, signature = _serving_function(model, outputs_as_dict=True)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=signature)
    if format == "savedmodel":
        archive.write_out(str(path), verbose=False)
        return
    # Converting from a SavedModel freezes the variables; from_concrete_functions on the live
    # model produced NaN outputs (variables left unread in the flatbuffer).
    with tempfile.TemporaryDirectory() as saved_model:
        archive.write_out(saved_model, verbose=False)
        path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
