"""PyTorch exporters: ONNX through `torch.onnx.export(dynamo=True)`, and `torch.export` (.pt2).

Exported graphs take canonical inputs (torch's own layout) with a dynamic batch dimension.
Recurrent models take `parity.export.input_signature`'s named inputs (sequence or tokens, then
h_0, c_0). torch.export specializes their time axis (nn.RNN/LSTM/GRU are unrolled while tracing),
so they are traced at `spec.seq_len`; the ONNX graph gets a symbolic `time` axis only when a
second trace, one step longer, gives the identical graph (ONNX LSTM/GRU ops: yes; RNN: unrolled).
"""
import contextlib
import io

import torch
from torch import nn

from parity.compare import example_batch
from parity.export import BATCH, STATE_INPUTS, TIME, input_signature, is_sequence, symbolic_axes


class _OutputTuple(nn.Module):
    """The model's outputs as a tuple in the spec's order: ONNX outputs are positional."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        outputs = self.model(x)
        return tuple(outputs[name] for name in self.model.spec.output_names)


class _Sequence(nn.Module):
    """A recurrent model with the exported signature: positional (main input, h_0[, c_0]), named
    like parity's inputs (torch.export keeps the argument names), outputs in the spec's order."""

    def __init__(self, model, as_dict: bool):
        super().__init__()
        self.model = model
        self.as_dict = as_dict

    def outputs(self, outputs):
        names = self.model.spec.output_names
        return {name: outputs[name] for name in names} if self.as_dict else tuple(outputs[n] for n in names)


class _SequenceH(_Sequence):
    def forward(self, sequence, h_0):
        return self.outputs(self.model(sequence, h_0=h_0))


class _SequenceHC(_Sequence):
    def forward(self, sequence, h_0, c_0):
        return self.outputs(self.model(sequence, h_0=h_0, c_0=c_0))


class _TokensHC(_Sequence):
    def forward(self, tokens, h_0, c_0):
        return self.outputs(self.model(tokens, h_0=h_0, c_0=c_0))


# Transformers, by their exported input names (parity.export.input_signature).
class _InputIdsMask(_Sequence):
    def forward(self, input_ids, attention_mask):
        return self.outputs(self.model(input_ids, attention_mask=attention_mask))


class _InputIdsMaskTypes(_Sequence):
    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.outputs(self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids))


class _EncoderDecoderIds(_Sequence):
    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask):
        return self.outputs(self.model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                                       decoder_attention_mask=decoder_attention_mask))


class _QueryKeyValueMasks(_Sequence):
    def forward(self, query, key, value, key_padding_mask, attn_mask):
        return self.outputs(self.model(query, key=key, value=value, key_padding_mask=key_padding_mask,
                                       attn_mask=attn_mask))


class _TokensDecoderTokens(_Sequence):
    def forward(self, tokens, decoder_tokens):
        return self.outputs(self.model(tokens, decoder_tokens=decoder_tokens))


_NAMED = {("input_ids", "attention_mask"): _InputIdsMask,
          ("input_ids", "attention_mask", "token_type_ids"): _InputIdsMaskTypes,
          ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask"): _EncoderDecoderIds,
          ("query", "key", "value", "key_padding_mask", "attn_mask"): _QueryKeyValueMasks,
          ("tokens", "decoder_tokens"): _TokensDecoderTokens}


def _wrapped(model, as_dict: bool):
    spec = model.spec
    if spec.declared_inputs() is not None:
        return _NAMED[tuple(name for name, _, _ in input_signature(spec, "float32"))](model, as_dict)
    if not is_sequence(spec):
        return model if as_dict else _OutputTuple(model)
    states = [name for name in spec.optional_inputs if name in STATE_INPUTS]
    wrapper = {("sequence", 1): _SequenceH, ("sequence", 2): _SequenceHC, ("tokens", 2): _TokensHC}
    return wrapper[spec.input_kind, len(states)](model, as_dict)


def _declared_examples_and_dynamic_shapes(model):
    """A declared-input model's example (parity.example_batch at batch 2) with every named axis
    dynamic: one torch.export.Dim per axis name, shared by the inputs that have it."""
    spec = model.spec
    inputs = example_batch(spec, 2, dtype=str(next(model.parameters()).dtype).removeprefix("torch."))[0]
    dims = {}
    examples, dynamic = [], []
    for name, _, shape in input_signature(spec, "float32"):
        examples.append(torch.from_numpy(inputs[name]))
        dynamic.append({axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in enumerate(shape)
                        if isinstance(label, str)})
    return tuple(examples), tuple(dynamic)


def _examples_and_dynamic_shapes(model, steps=None):
    """Example inputs (batch 2, time `steps` or spec.seq_len) and their dynamic batch axes."""
    if model.spec.declared_inputs() is not None:
        return _declared_examples_and_dynamic_shapes(model)
    dtype = next(model.parameters()).dtype
    batch = torch.export.Dim(BATCH)
    examples, dynamic = [], []
    for name, kind, shape in input_signature(model.spec, str(dtype).removeprefix("torch."), dynamic_time=False):
        sizes = [2 if size == BATCH else size for size in shape]
        if steps is not None and name == model.spec.input_kind:
            sizes[1] = steps
        examples.append(torch.zeros(sizes, dtype=getattr(torch, kind)))
        dynamic.append({axis: batch for axis, label in symbolic_axes(model.spec, name).items() if label == BATCH})
    return tuple(examples), tuple(dynamic)


def _onnx_program(model, path, opset: int, steps=None):
    example, dynamic_shapes = _examples_and_dynamic_shapes(model, steps)
    names = [name for name, _, _ in input_signature(model.spec, "float32")]
    # The dynamo exporter prints its progress to stdout even with verbose=False; a failure still
    # raises with its own message, so the progress lines are dropped.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(_wrapped(model, as_dict=False), example, str(path), dynamo=True, opset_version=opset,
                          input_names=names, output_names=list(model.spec.output_names),
                          dynamic_shapes=dynamic_shapes, verbose=False)


def _graph_fingerprint(path) -> list[bytes]:
    """The nodes and initializers of an ONNX graph, without shape annotations or node metadata."""
    import onnx

    graph = onnx.load(str(path)).graph
    nodes = []
    for node in graph.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        del node.metadata_props[:]
        nodes.append(node.SerializeToString())
    return nodes + [tensor.SerializeToString() for tensor in graph.initializer]


def _mark_time_symbolic(model, path, opset: int) -> None:
    """Make the time axis of a recurrent model's ONNX graph symbolic if the graph does not depend
    on it: a second trace one step longer must give the identical graph."""
    import onnx

    spec = model.spec
    longer = path.with_name(path.name + ".longer")
    try:
        _onnx_program(model, longer, opset, steps=spec.seq_len + 1)
        if _graph_fingerprint(longer) != _graph_fingerprint(path):
            return  # the graph depends on the length (unrolled steps): the time axis stays fixed
    finally:
        longer.unlink(missing_ok=True)
    proto = onnx.load(str(path))
    for value in list(proto.graph.input) + list(proto.graph.output):
        for axis, label in symbolic_axes(spec, value.name).items():
            if label == TIME:
                value.type.tensor_type.shape.dim[axis].dim_param = TIME
    # The intermediate shape annotations carry the traced length; they are optional (ONNX re-infers).
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))


def export_onnx(model, path, opset: int):
    model.eval()
    _onnx_program(model, path, opset)
    if is_sequence(model.spec):
        _mark_time_symbolic(model, path, opset)


def export_native(model, path, format: str):
    """torch-export: a serialized ExportedProgram (dict outputs, dynamic batch; recurrent models
    at a fixed time axis of spec.seq_len steps)."""
    model.eval()
    example, dynamic_shapes = _examples_and_dynamic_shapes(model)
    program = torch.export.export(_wrapped(model, as_dict=True), example, dynamic_shapes=dynamic_shapes)
    torch.export.save(program, str(path))
