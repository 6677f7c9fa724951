"""Export any registered architecture from any framework: ONNX from all three, plus each
framework's native deployment format. Writes are atomic; an existing target needs `force`.

    format        frameworks            artifact
    onnx          torch, keras, jax     <path>.onnx (opset 18, dynamic batch, spec + state hash
                                        in metadata_props, canonical NCHW/feature inputs)
    torch-export  torch                 <path>.pt2 (torch.export ExportedProgram)
    savedmodel    keras                 <path>/<version>/ (TensorFlow Serving layout)
    tflite        keras                 <path>.tflite (LiteRT flatbuffer)
    jax-export    jax                   <path>.jaxexport (jax.export serialized StableHLO)

Recurrent models (rnn, lstm, gru, char_lm) export with the same named inputs in every format:
the main input `sequence` float32 (batch, time, input_size) or `tokens` int64 (batch, time),
then the initial states `h_0` (and `c_0` for LSTMs) float32 (num_layers * directions, batch,
hidden_size), so a deployed language model is stepped with its state carried; run_exported
fills omitted states with zeros, as the native models do. Outputs keep the spec's order
(`output`/`logits`, `h_n`, `c_n`).
Limitations, each tested (tests/test_export_sequence.py):
- No `lengths` input: exported recurrent layers take full-length sequences. torch.export cannot
  trace pack_padded_sequence (GuardOnDataDependentSymNode: "Could not extract specialized
  integer from data-dependent expression u0"), so no format takes lengths. Padded steps are
  computed like any other (h_n is the state after the last padded step): run each sequence at
  its own length where the time axis is symbolic.
- The time axis is symbolic (`time`) where the exporter keeps it so: ONNX from Keras and JAX,
  SavedModel, jax-export, and ONNX from torch for lstm, gru and char_lm (the ONNX LSTM/GRU ops
  do not depend on the length: parity traces twice, at seq_len and seq_len + 1, and marks the
  axis symbolic only when both graphs are identical). It is fixed at the spec's `seq_len` in
  torch-export (torch.export unrolls nn.RNN/LSTM/GRU over the steps: "Constraints violated
  (time)! ... specialized it to be a constant"), in ONNX from torch for rnn (the exporter
  unrolls aten.rnn_tanh/rnn_relu step by step), and in TFLite (keras.layers.RNN's while loop
  needs "'tf.TensorListReserve' op requires element_shape to be static", so the loops are
  unrolled over seq_len steps). Export a spec with another `seq_len` (the state is the same)
  for another fixed length, e.g. seq_len=1 to step a language model one token at a time.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from parity.errors import InputError, ParityError
from parity.frameworks import FRAMEWORKS, adapter, build, impl_module
from parity.specs import Spec

OPSET = 18  # the newest opset all three exporters (torch dynamo, tf2onnx 1.17, jax2onnx) emit
FORMATS = {
    "onnx": FRAMEWORKS,
    "torch-export": ("torch",),
    "savedmodel": ("keras",),
    "tflite": ("keras",),
    "jax-export": ("jax",),
}
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2", "savedmodel": "", "tflite": ".tflite",
            "jax-export": ".jaxexport"}

BATCH, TIME = "batch", "time"  # the names of the symbolic axes of exported inputs and outputs
SEQUENCE_INPUTS = ("sequence", "tokens")  # input kinds of the recurrent models
# Initial states: exported as inputs (run_exported fills omitted ones with zeros).
STATE_INPUTS = ("h_0", "c_0")
# Native inputs no exported artifact takes, and why (run_exported's error when one is given).
NOT_EXPORTED = {
    "lengths": "exported recurrent layers take full-length sequences: torch.export cannot trace "
               "pack_padded_sequence (GuardOnDataDependentSymNode), so no format takes `lengths`; "
               "run each sequence at its own length where the time axis is symbolic",
}
# (framework, format) pairs whose exported time axis is always fixed at spec.seq_len, and why.
FIXED_TIME = {
    ("torch", "torch-export"): "torch.export unrolls nn.RNN/LSTM/GRU over the steps and specializes the time "
                               "axis (\"Constraints violated (time)! ... specialized it to be a constant\")",
    ("keras", "tflite"): "keras.layers.RNN's while loop does not convert (\"'tf.TensorListReserve' op requires "
                         "element_shape to be static\"): the loops are unrolled over seq_len steps",
}


# Architectures no exporter here takes, and why (export's InputError).
NOT_EXPORTABLE = {
    "decoder_tokens": "encoder-decoder models (seq2seq_bahdanau, seq2seq_luong) are not exported yet: their "
                      "forward pass is a Python loop of decode steps, teacher-forced on `decoder_tokens` or "
                      "greedy, with variable-length sources (`lengths`), and the export harness takes one "
                      "main input and recurrent states only; a deployable encoder-decoder exports `encode` and "
                      "`decode_step` as two graphs, which this harness does not do",
}


class ExportError(ParityError, ValueError):
    """An unsupported framework/format pair, an existing target without force, a failed export."""


def state_hash(state: dict[str, np.ndarray]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in state order."""
    digest = hashlib.sha256()
    for name, value in state.items():
        value = np.asarray(value)
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def is_sequence(spec: Spec) -> bool:
    """A recurrent model (its time axis and initial states are handled as the module docstring says)."""
    return spec.declared_inputs() is None and spec.input_kind in SEQUENCE_INPUTS


def takes_named_inputs(spec: Spec) -> bool:
    """Exported with several named inputs (a recurrent model's states, a transformer's masks), not one."""
    return is_sequence(spec) or spec.declared_inputs() is not None


# A declared input's dtype in an exported signature (ids and 0/1 masks as int64, as natively).
_EXPORTED_DTYPES = {"int": "int64", "mask": "int64", "bool": "bool"}


def _axis_label(axis):
    """A declared axis -> an exported one: "B" is `batch`, other names stay (symbolic), ints fixed."""
    return BATCH if axis == "B" else axis


def input_signature(spec: Spec, dtype: str, dynamic_time: bool = True) -> list[tuple[str, str, tuple]]:
    """(name, dtype, shape) of every input an exported artifact of `spec` takes, in order.

    Shapes hold ints and the names of symbolic axes: `batch` always, `time` for the time axis of a
    recurrent model's main input when `dynamic_time` (else it is fixed at `spec.seq_len`). A spec
    that declares its inputs exports every one of them (but NOT_EXPORTED's), with its declared
    axis names symbolic (`T`, `S`, ...).
    """
    declared = spec.declared_inputs()
    if declared is not None:
        return [(name, _EXPORTED_DTYPES.get(decl.dtype, dtype), tuple(_axis_label(a) for a in decl.shape))
                for name, decl in declared.items() if name not in NOT_EXPORTED]
    if not is_sequence(spec):
        return [(spec.input_kind, dtype, (BATCH, *spec.input_shape))]
    time = TIME if dynamic_time else spec.seq_len
    if spec.input_kind == "tokens":
        main = (spec.input_kind, "int64", (BATCH, time))
    else:
        main = (spec.input_kind, dtype, (BATCH, time, *spec.input_shape[1:]))
    layers, hidden = spec.state_shape
    return [main] + [(name, dtype, (layers, BATCH, hidden)) for name in spec.optional_inputs if name in STATE_INPUTS]


def symbolic_axes(spec: Spec, name: str) -> dict[int, str]:
    """Axis index -> `batch`/`time` (or a declared axis name) for an exported input or output of `spec`."""
    declared = spec.declared_inputs()
    if declared is not None:
        shape = declared[name].shape if name in declared else spec.declared_outputs().get(name, ("B",))
        return {i: _axis_label(axis) for i, axis in enumerate(shape) if isinstance(axis, str)}
    if not is_sequence(spec):
        return {0: BATCH}
    if name in STATE_INPUTS or name in ("h_n", "c_n"):
        return {1: BATCH}  # (num_layers * directions, batch, hidden)
    return {0: BATCH, 1: TIME}  # sequence/tokens, output/logits


def check_exportable(spec: Spec) -> None:
    """InputError for an architecture the exporters cannot take (NOT_EXPORTABLE says why)."""
    for feature, why in NOT_EXPORTABLE.items():
        if spec.declared_inputs() is None and feature in spec.optional_inputs:
            raise InputError(f"export: {spec.architecture} cannot be exported: {why}")


def exportable_architectures() -> list[str]:
    """The registered architectures the exporters take (the others: NOT_EXPORTABLE)."""
    from parity.specs import REGISTRY, architectures

    return [name for name in architectures()
            if REGISTRY[name].declared_inputs is not Spec.declared_inputs  # declares its inputs
            or not any(feature in REGISTRY[name].optional_inputs for feature in NOT_EXPORTABLE)]


def check_support(framework: str, format: str) -> None:
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; expected one of {list(FORMATS)}")
    if framework not in FORMATS[format]:
        supported = [f"{fmt} ({', '.join(fws)})" for fmt, fws in FORMATS.items()]
        raise ExportError(f"framework {framework!r} cannot export format {format!r}; supported: {supported}")


def default_path(out_dir, name: str, framework: str, format: str) -> Path:
    """`<out>/<name>-<framework>[-<format>]<suffix>`, the CLI's naming."""
    tag = "" if format == "onnx" else f"-{format}"
    return Path(out_dir) / f"{name}-{framework}{tag}{SUFFIXES[format]}"


def _annotate_onnx(path: Path, spec: Spec, state_digest: str, framework: str) -> None:
    """Canonical input/output names, a `batch` dimension, provenance metadata, full check."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    names = [name for name, _, _ in input_signature(spec, "float32")]
    if len(graph.input) != len(names):
        raise ExportError(f"export: the {framework} ONNX graph has {len(graph.input)} inputs, expected {names}")
    renames = {old.name: new for old, new in zip(graph.input, names)}
    renames.update({old.name: new for old, new in zip(graph.output, spec.output_names)})
    _rename_values(graph, renames)
    for value in list(graph.input) + list(graph.output):
        value.name = renames.get(value.name, value.name)
        dims = value.type.tensor_type.shape.dim
        for axis, label in symbolic_axes(spec, value.name).items():
            # Batch is always symbolic; time where the exporter left it symbolic (not a fixed size).
            if label == BATCH or not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = label
    del model.metadata_props[:]
    for key, value in {"parity.architecture": spec.architecture, "parity.framework": framework,
                       "parity.spec": json.dumps(spec.to_dict()), "parity.state_sha256": state_digest,
                       "parity.input_layout": "canonical (torch) layout, batch first"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _rename_values(graph, renames: dict[str, str]) -> None:
    """Rename values in a graph's nodes, and in the subgraphs of Loop/If/Scan bodies, which may
    read the outer graph's inputs by name."""
    import onnx

    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                _rename_values(attribute.g, renames)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    _rename_values(subgraph, renames)


def _replace_atomically(staged: Path, target: Path) -> None:
    if staged.is_dir():
        backup = None
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            os.replace(target, backup)
        os.replace(staged, target)
        if backup is not None:
            shutil.rmtree(backup)
    else:
        os.replace(staged, target)


def export(framework: str, model_or_spec, path, format: str = "onnx", state: dict | None = None, *,
           force: bool = False, version: int = 1) -> Path:
    """Export a model (or build one from a spec and optional canonical state) to `path`.

    For `savedmodel`, `path` is the model's base directory and the SavedModel is written to
    `<path>/<version>/`, the layout TensorFlow Serving polls. Returns the artifact's path.
    """
    check_support(framework, format)
    if isinstance(model_or_spec, Spec):
        model = build(framework, model_or_spec, state)
    elif state is not None:
        raise ExportError("export: give `state` only with a spec; a model already holds its weights")
    else:
        model = model_or_spec
    spec = model.spec
    check_exportable(spec)
    api = adapter(framework)
    if api.dtype_of(model) != "float32":
        raise ExportError(f"export: deployment formats are float32; the model is {api.dtype_of(model)}")
    target = Path(path) / str(version) if format == "savedmodel" else Path(path)
    if target.exists() and not force:
        raise ExportError(f"export: {str(target)!r} exists; pass force=True (--force) to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    exporter = impl_module(framework, "export")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    try:
        staged = staging / (target.name or "artifact")
        if format == "onnx":
            exporter.export_onnx(model, staged, OPSET)
            _annotate_onnx(staged, spec, state_hash(api.export_state(model)), framework)
        else:
            exporter.export_native(model, staged, format)
        if not staged.exists():
            raise ExportError(f"export: the {framework} {format} exporter wrote nothing")
        _replace_atomically(staged, target)
    except ParityError:
        raise
    except Exception as err:
        raise ExportError(f"export of {spec.architecture} from {framework} to {format} failed: "
                          f"{type(err).__name__}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

