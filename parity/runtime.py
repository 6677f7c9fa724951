"""Run an exported artifact (any format `parity.export` writes) on canonical numpy inputs.

Each format runs in its own runtime, loaded lazily: ONNX Runtime, torch.export.load,
tf.saved_model.load, the LiteRT interpreter, jax.export.deserialize. A file that is not a
valid artifact of its format is an ExportError naming the file and the format expected.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from parity.export import NOT_EXPORTED, STATE_INPUTS, SUFFIXES, ExportError

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


def _np_dtype(dtype) -> str:
    return str(dtype).removeprefix("torch.")


_ONNX_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16"}


def _load_onnx(path, optimize):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    declared = [(i.name, _ONNX_TYPES.get(i.type, i.type), tuple(d if isinstance(d, int) else None for d in i.shape))
                for i in session.get_inputs()]
    names = [o.name for o in session.get_outputs()]
    return declared, lambda feed: dict(zip(names, session.run(names, feed)))


def _load_torch_export(path, optimize):
    import torch
    from torch.export.graph_signature import InputKind

    program = torch.export.load(str(path))
    user = [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind == InputKind.USER_INPUT]
    values = {node.name: node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder"}
    declared = [(name, _np_dtype(values[name].dtype),
                 tuple(d if isinstance(d, int) else None for d in values[name].shape)) for name in user]
    module = program.module()

    def call(feed):
        with torch.no_grad():
            return {k: v.numpy() for k, v in module(*(torch.from_numpy(feed[n]) for n in user)).items()}
    return declared, call


def _load_savedmodel(path, optimize):
    import tensorflow as tf

    path = path if (path / "saved_model.pb").is_file() else _latest_version(path)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    specs = serve.structured_input_signature[1]
    declared = [(name, spec.dtype.name, tuple(spec.shape.as_list())) for name, spec in specs.items()]

    def call(feed):
        return {k: v.numpy() for k, v in serve(**{n: tf.constant(x) for n, x in feed.items()}).items()}
    return declared, call


def _load_tflite(path, optimize):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    declared = [(name, np.dtype(detail["dtype"]).name,
                 tuple(int(d) if d >= 0 else None for d in detail["shape_signature"]))
                for name, detail in runner.get_input_details().items()]
    # copy: the arrays are views of interpreter memory, freed with the interpreter
    return declared, lambda feed: {k: np.array(v, copy=True) for k, v in runner(**feed).items()}


def _load_jax_export(path, optimize):
    import jax

    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    args, _ = jax.tree_util.tree_unflatten(exported.in_tree, exported.in_avals)
    wide = any(aval.dtype.itemsize == 8 for aval in exported.in_avals)

    def shape(aval):
        return tuple(d if isinstance(d, int) else None for d in aval.shape)

    def run(*arguments):
        # int64 tokens: JAX has 64-bit types only under x64 (else it would pass them as int32)
        with jax.enable_x64(True) if wide else contextlib.nullcontext():
            return {k: np.asarray(v) for k, v in exported.call(*arguments).items()}

    if len(args) == 1 and isinstance(args[0], dict):  # named inputs, one dict argument
        declared = [(name, aval.dtype.name, shape(aval)) for name, aval in args[0].items()]
        return declared, lambda feed: run(feed)
    declared = [(None, aval.dtype.name, shape(aval)) for aval in args]
    return declared, lambda feed: run(*feed.values())


def _feed(path, declared, inputs) -> dict:
    """The arrays to run an artifact on, by declared name: a bare array is the main input (the one
    input that is not an initial state), omitted initial states are zeros, integer inputs take
    the declared integer type. An artifact with one input takes a bare array or any one-entry dict."""
    names = [name for name, _, _ in declared]
    main = [name for name in names if name not in STATE_INPUTS]
    if not isinstance(inputs, dict):
        inputs = {main[0]: inputs}
    elif len(declared) == 1 and len(inputs) == 1:
        inputs = {names[0]: next(iter(inputs.values()))}
    not_exported = [name for name in inputs if name not in names and name in NOT_EXPORTED]
    if not_exported:
        raise ExportError(f"{str(path)!r}: no input {not_exported[0]!r}: {NOT_EXPORTED[not_exported[0]]}")
    unknown = [name for name in inputs if name not in names]
    missing = [name for name in names if name not in inputs and name not in STATE_INPUTS]
    if unknown or missing:
        raise ExportError(f"{str(path)!r}: the artifact takes inputs {names} (initial states optional), "
                          f"got {sorted(inputs)}")
    batch = np.shape(inputs[main[0]])[0]
    feed = {}
    for name, dtype, shape in declared:
        if name not in inputs:  # an initial state: zeros, as the native models start
            feed[name] = np.zeros([batch if size is None else size for size in shape], dtype)
            continue
        value = np.ascontiguousarray(inputs[name])
        if np.issubdtype(value.dtype, np.integer) and np.issubdtype(np.dtype(dtype), np.integer):
            value = value.astype(dtype, copy=False)
        feed[name] = value
    return feed


_LOADERS = {"onnx": _load_onnx, "torch-export": _load_torch_export, "savedmodel": _load_savedmodel,
            "tflite": _load_tflite, "jax-export": _load_jax_export}


def artifact_inputs(path) -> list[tuple[str | None, str, tuple]]:
    """(name, dtype, shape) of every input an artifact takes, in its own order; `None` marks a
    dynamic axis (and the name of jax-export's one positional input)."""
    path = Path(path)
    format = detect_format(path)
    try:
        return _LOADERS[format](path, True)[0]
    except Exception as err:
        raise ExportError(f"{str(path)!r}: could not load it as a {format} artifact: "
                          f"{type(err).__name__}: {str(err)[:300]}") from err


def run_exported(path, inputs, *, optimize: bool = True) -> dict[str, np.ndarray]:
    """Outputs of an exported artifact, by name, for canonical inputs: an array (the main input),
    or a dict of named arrays (`sequence`/`tokens`, optional `h_0`, `c_0`). `optimize=False`
    turns ONNX Runtime's graph optimizations off."""
    path = Path(path)
    format = detect_format(path)
    try:
        declared, call = _LOADERS[format](path, optimize)
    except Exception as err:
        raise ExportError(f"{str(path)!r}: could not run it as a {format} artifact: "
                          f"{type(err).__name__}: {str(err)[:300]}") from err
    feed = _feed(path, declared, inputs)
    try:
        return call(feed)
    except Exception as err:
        raise ExportError(f"{str(path)!r}: could not run it as a {format} artifact: "
                          f"{type(err).__name__}: {str(err)[:300]}") from err
