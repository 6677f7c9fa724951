"""JAX exporters: ONNX through jax2onnx, and `jax.export` serialized StableHLO.

The model is split into a pure function of its input (`nnx.split`/`nnx.merge`, parameters as
constants). Exported graphs take canonical inputs (channels first): the function applies the
input permutation of `parity.layouts` before calling the channels-last model.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from parity import layouts
from jax_impl.api import dtype_of


def _pure_function(model, outputs_as_dict: bool):
    spec = model.spec
    graphdef, state = nnx.split(model)
    permutation = layouts.input_permutation("jax", len(spec.input_shape) + 1, spec.input_kind)

    def forward(x):
        outputs = nnx.merge(graphdef, state)(x if permutation is None else jnp.transpose(x, permutation))
        if outputs_as_dict:  # jax.export keeps the output pytree, names included
            return {name: outputs[name] for name in spec.output_names}
        return tuple(outputs[name] for name in spec.output_names)  # ONNX outputs are positional

    return forward


def export_onnx(model, path, opset: int):
    import jax2onnx
    import onnx

    spec = model.spec
    proto = jax2onnx.to_onnx(_pure_function(model, outputs_as_dict=False),
                             [jax.ShapeDtypeStruct(jax.export.symbolic_shape(
                                 ", ".join(["batch", *map(str, spec.input_shape)])), jnp.dtype(dtype_of(model)))],
                             opset=opset, input_names=[spec.input_kind], output_names=list(spec.output_names))
    # jax2onnx computes Conv -> BatchNorm -> ReLU/Add chains in NCHW and folds away the transposes
    # between them, but leaves those values annotated with their channels-last shapes, which strict
    # shape inference rejects (ResNet: "(16) vs (4)"). The annotations are optional: ONNX re-infers them.
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))


def export_native(model, path, format: str):
    """jax-export: `jax.export` serialized StableHLO with a symbolic batch dimension."""
    spec = model.spec
    shape = jax.export.symbolic_shape(", ".join(["batch", *map(str, spec.input_shape)]))
    exported = jax.export.export(jax.jit(_pure_function(model, outputs_as_dict=True)))(
        jax.ShapeDtypeStruct(shape, jnp.dtype(dtype_of(model))))
    path.write_bytes(exported.serialize())
