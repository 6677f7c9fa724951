"""JAX exporters: ONNX through jax2onnx, and `jax.export` serialized StableHLO.

The model is split into a pure function of its input (`nnx.split`/`nnx.merge`, parameters as
constants). Exported graphs take canonical inputs (channels first): the function applies the
input permutation of `parity.layouts` before calling the channels-last model. Recurrent models
take `parity.export.input_signature`'s named inputs (sequence or tokens, then h_0, c_0) with
symbolic batch and time axes: nnx.RNN's scan becomes an ONNX Loop / a StableHLO while loop.
jax-export takes them as one dict argument (`exported.call({"sequence": x, "h_0": h})`).
"""
import contextlib

import jax
import jax.numpy as jnp
from flax import nnx

from parity import layouts
from parity.export import input_signature, takes_named_inputs
from jax_impl.api import dtype_of


def _pure_function(model, outputs_as_dict: bool):
    spec = model.spec
    graphdef, state = nnx.split(model)

    def outputs_of(outputs):
        if outputs_as_dict:  # jax.export keeps the output pytree, names included
            return {name: outputs[name] for name in spec.output_names}
        return tuple(outputs[name] for name in spec.output_names)  # ONNX outputs are positional

    if takes_named_inputs(spec):
        names = [name for name, _, _ in input_signature(spec, "float32")]

        def forward(*inputs):
            # copy=True: fresh variables at this trace level; nnx.RNN's scan refuses the model's own
            # ("Cannot extract graph node from different trace level").
            named = dict(zip(names[1:], inputs[1:]))
            return outputs_of(nnx.merge(graphdef, state, copy=True)(inputs[0], **named))
    else:
        permutation = layouts.input_permutation("jax", len(spec.input_shape) + 1, spec.input_kind)

        def forward(x):
            return outputs_of(nnx.merge(graphdef, state)(x if permutation is None else jnp.transpose(x, permutation)))

    return forward


def _abstract_inputs(model) -> list[jax.ShapeDtypeStruct]:
    """The exported inputs with symbolic `batch` (and `time`) axes, all in one symbolic scope."""
    scope = jax.export.SymbolicScope()
    return [jax.ShapeDtypeStruct(jax.export.symbolic_shape(", ".join(map(str, shape)), scope=scope), jnp.dtype(dtype))
            for _, dtype, shape in input_signature(model.spec, str(dtype_of(model)))]


@contextlib.contextmanager
def _wide_inputs(model):
    """x64 on while tracing a model with int64 inputs (tokens): JAX has 64-bit types only under
    x64 and would trace them as int32; float parameters and activations stay float32.
    jax2onnx.to_onnx turns the *global* flag off for a float32 export and back to the value it
    read, which inside this scope is True: restoring the global flag keeps x64 to this scope."""
    if not any(dtype == "int64" for _, dtype, _ in input_signature(model.spec, "float32")):
        yield
        return
    global_x64 = jax.config.jax_enable_x64
    try:
        with jax.enable_x64(True):
            yield
    finally:
        jax.config.update("jax_enable_x64", global_x64)


def export_onnx(model, path, opset: int):
    import jax2onnx
    import onnx

    spec = model.spec
    names = [name for name, _, _ in input_signature(spec, "float32")]
    with _wide_inputs(model):
        proto = jax2onnx.to_onnx(_pure_function(model, outputs_as_dict=False), _abstract_inputs(model),
                                 opset=opset, input_names=names, output_names=list(spec.output_names))
    # jax2onnx computes Conv -> BatchNorm -> ReLU/Add chains in NCHW and folds away the transposes
    # between them, but leaves those values annotated with their channels-last shapes, which strict
    # shape inference rejects (ResNet: "(16) vs (4)"). The annotations are optional: ONNX re-infers them.
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))


def export_native(model, path, format: str):
    """jax-export: `jax.export` serialized StableHLO with a symbolic batch dimension (and time
    axis); a recurrent model's function takes its inputs as one dict, keyed by name."""
    function = _pure_function(model, outputs_as_dict=True)
    with _wide_inputs(model):
        inputs = _abstract_inputs(model)
        if takes_named_inputs(model.spec):
            names = [name for name, _, _ in input_signature(model.spec, "float32")]
            positional = function

            def function(named):
                return positional(*(named[name] for name in names))

            inputs = [dict(zip(names, inputs))]
        exported = jax.export.export(jax.jit(function))(*inputs)
    path.write_bytes(exported.serialize())
