"""PyTorch exporters: ONNX through `torch.onnx.export(dynamo=True)`, and `torch.export` (.pt2).

Exported graphs take canonical inputs (torch's own layout) with a dynamic batch dimension.
"""
import contextlib
import io

import torch
from torch import nn


class _OutputTuple(nn.Module):
    """The model's outputs as a tuple in the spec's order: ONNX outputs are positional."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        outputs = self.model(x)
        return tuple(outputs[name] for name in self.model.spec.output_names)


def _example_and_dynamic_batch(model):
    spec = model.spec
    example = torch.zeros((2, *spec.input_shape), dtype=next(model.parameters()).dtype)
    return (example,), ({0: torch.export.Dim("batch")},)


def export_onnx(model, path, opset: int):
    model.eval()
    example, dynamic_shapes = _example_and_dynamic_batch(model)
    # The dynamo exporter prints its progress to stdout even with verbose=False; a failure still
    # raises with its own message, so the progress lines are dropped.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(_OutputTuple(model), example, str(path), dynamo=True, opset_version=opset,
                          input_names=[model.spec.input_kind], output_names=list(model.spec.output_names),
                          dynamic_shapes=dynamic_shapes, verbose=False)


def export_native(model, path, format: str):
    """torch-export: a serialized ExportedProgram (dict outputs, dynamic batch)."""
    model.eval()
    example, dynamic_shapes = _example_and_dynamic_batch(model)
    program = torch.export.export(model, example, dynamic_shapes=dynamic_shapes)
    torch.export.save(program, str(path))
