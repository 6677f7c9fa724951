"""Run an exported artifact (any format `parity.export` writes) on canonical numpy inputs.

Each format runs in its own runtime, loaded lazily: ONNX Runtime, torch.export.load,
tf.saved_model.load, the LiteRT interpreter, jax.export.deserialize. A file that is not a
valid artifact of its format is an ExportError naming the file and the format expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from parity.export import SUFFIXES, ExportError

_BY_SUFFIX = {suffix: fmt for fmt, suffix in SUFFIXES.items() if suffix}


def detect_format(path) -> str:
    """The format of an artifact: by suffix, or a SavedModel directory (a version folder or
    the model folder above it, TensorFlow Serving style: the highest version is used)."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or _latest_version(path) is not None:
            return "savedmodel"
        raise ExportError(f"{str(path)!r}: a directory but not a SavedModel (no saved_model.pb in it "
                          f"or in a numbered version folder)")
    if not path.is_file():
        raise ExportError(f"{str(path)!r}: no such exported artifact")
    if path.suffix not in _BY_SUFFIX:
        raise ExportError(f"{str(path)!r}: unknown artifact type {path.suffix or '(no suffix)'!r}; "
                          f"expected one of {sorted(_BY_SUFFIX)} or a SavedModel directory")
    return _BY_SUFFIX[path.suffix]


def _latest_version(path: Path) -> Path | None:
    versions = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()]
    return max(versions, key=lambda p: int(p.name), default=None)


def _single_input(inputs):
    if isinstance(inputs, dict):
        if len(inputs) != 1:
            raise ExportError(f"inputs: these artifacts take one input, got {sorted(inputs)}")
        inputs = next(iter(inputs.values()))
    return np.ascontiguousarray(inputs)


def _run_onnx(path, x, optimize):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


def _run_torch_export(path, x, optimize):
    import torch

    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        return {k: v.numpy() for k, v in module(torch.from_numpy(x)).items()}


def _run_savedmodel(path, x, optimize):
    import tensorflow as tf

    path = path if (path / "saved_model.pb").is_file() else _latest_version(path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name,) = serve.structured_input_signature[1]
    return {k: v.numpy() for k, v in serve(**{name: tf.constant(x)}).items()}


def _run_tflite(path, x, optimize):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    # copy: the arrays are views of interpreter memory, freed with the interpreter
    return {k: np.array(v, copy=True) for k, v in runner(**{name: x}).items()}


def _run_jax_export(path, x, optimize):
    import jax

    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return {k: np.asarray(v) for k, v in exported.call(x).items()}


_RUNNERS = {"onnx": _run_onnx, "torch-export": _run_torch_export, "savedmodel": _run_savedmodel,
            "tflite": _run_tflite, "jax-export": _run_jax_export}


def run_exported(path, inputs, *, optimize: bool = True) -> dict[str, np.ndarray]:
    """Outputs of an exported artifact, by name, for canonical inputs (an array or a one-entry
    dict). `optimize=False` turns ONNX Runtime's graph optimizations off."""
    path = Path(path)
    format = detect_format(path)
    x = _single_input(inputs)
    try:
        return _RUNNERS[format](path, x, optimize)
    except Exception as err:
        raise ExportError(f"{str(path)!r}: could not run it as a {format} artifact: "
                          f"{type(err).__name__}: {str(err)[:300]}") from err
