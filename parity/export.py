"""Export any registered architecture from any framework: ONNX from all three, plus each
framework's native deployment format. Writes are atomic; an existing target needs `force`.

    format        frameworks            artifact
    onnx          torch, keras, jax     <path>.onnx (opset 18, dynamic batch, spec + state hash
                                        in metadata_props, canonical NCHW/feature inputs)
    torch-export  torch                 <path>.pt2 (torch.export ExportedProgram)
    savedmodel    keras                 <path>/<version>/ (TensorFlow Serving layout)
    tflite        keras                 <path>.tflite (LiteRT flatbuffer)
    jax-export    jax                   <path>.jaxexport (jax.export serialized StableHLO)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from parity.errors import ParityError
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
    renames = {old.name: new for old, new in zip(graph.input, [spec.input_kind])}
    renames.update({old.name: new for old, new in zip(graph.output, spec.output_names)})
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in list(graph.input) + list(graph.output):
        value.name = renames.get(value.name, value.name)
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.metadata_props[:]
    for key, value in {"parity.architecture": spec.architecture, "parity.framework": framework,
                       "parity.spec": json.dumps(spec.to_dict()), "parity.state_sha256": state_digest,
                       "parity.input_layout": "canonical (torch) layout, batch first"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


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

