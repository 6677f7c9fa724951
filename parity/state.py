"""Canonical state: an ordered dict of numpy arrays named like the PyTorch reference.

Initialised once in numpy (so all three frameworks start from identical bits), validated as a
whole (every problem reported at once), saved as safetensors with the spec in the metadata,
written atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from parity.errors import CheckpointError, StateError
from parity.params import Param
from parity.specs import Spec, spec_from_dict

FLOAT_DTYPES = ("float32", "float64")
SPEC_KEY = "parity.spec"


def layout(spec: Spec) -> dict[str, Param]:
    """Every canonical name with its shape, dtype, kind and init, parameters and buffers."""
    return spec.layout()


def _param_dtype(param: Param, dtype: str) -> np.dtype:
    return np.dtype(dtype if param.dtype == "float" else param.dtype)


def _check_float_dtype(dtype) -> str:
    name = np.dtype(dtype).name if dtype is not None else None
    if name not in FLOAT_DTYPES:
        raise StateError([f"dtype: expected one of {list(FLOAT_DTYPES)}, got {dtype!r}"], what="request")
    return name


def init_state(spec: Spec, seed: int = 0, dtype: str = "float32", *,
               random_norms: bool = False) -> dict[str, np.ndarray]:
    """Deterministic numpy initialisation with torch.nn's defaults.

    Linear/Conv weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); batch-norm weight 1,
    bias 0, running mean 0, running var 1. Each tensor draws from its own stream keyed by
    (seed, name), so adding a layer never changes the others. `random_norms=True` draws the
    batch-norm affine parameters and running statistics at random instead, so a parity check
    notices a framework that ignores one of them (with 1/0/0/1 they are invisible).
    """
    dtype = _check_float_dtype(dtype)
    return {name: init_tensor(name, param, seed, dtype, random_norms=random_norms)
            for name, param in layout(spec).items()}


def init_tensor(name: str, param: Param, seed: int = 0, dtype: str = "float32", *,
                random_norms: bool = False) -> np.ndarray:
    """One tensor of `init_state`, from its own (seed, name) stream: re-initialising a few tensors
    (a new classifier head) gives exactly what `init_state` gives them."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    init = param.init
    if random_norms and init.startswith("norm_"):
        low, high = {"norm_weight": (0.5, 1.5), "norm_bias": (-0.5, 0.5),
                     "norm_mean": (-0.5, 0.5), "norm_var": (0.5, 1.5)}[init]
        value = rng.uniform(low, high, param.shape)
    elif init == "normal":  # std 1 (torch.nn.Embedding) unless the layout says (HF's initializer_range)
        value = param.meta.get("std", 1.0) * rng.standard_normal(param.shape)
    elif init == "uniform":
        bound = 1.0 / np.sqrt(param.fan_in)
        value = rng.uniform(-bound, bound, param.shape)
    elif init in ("ones", "norm_weight", "norm_var"):  # meta["value"]: a constant other than 1 (T5's initializer_factor)
        value = np.full(param.shape, param.meta.get("value", 1.0))
    else:  # zeros, norm_bias, norm_mean
        value = np.zeros(param.shape)
    return np.array(value, dtype=_param_dtype(param, dtype), order="C")


def state_dtype(state: dict[str, np.ndarray]) -> str:
    """The float dtype of a state (float32 or float64)."""
    floats = {a.dtype.name for a in state.values() if np.issubdtype(a.dtype, np.floating)}
    if len(floats) != 1 or next(iter(floats)) not in FLOAT_DTYPES:
        raise StateError([f"float dtype: expected every float tensor in one of {list(FLOAT_DTYPES)}, "
                          f"got {sorted(floats) or 'no float tensors'}"])
    return floats.pop()


def check_state(spec: Spec, state) -> dict[str, np.ndarray]:
    """Validate a state against the spec's layout; raise one StateError listing every problem.

    Checks: missing names, unexpected names, shapes, dtypes (one float dtype throughout,
    float32 or float64; int64 counters), non-finite values. Returns the state, without the
    aliases of tied tensors a reference state dict may hold (`untie`).
    """
    return check_entries(layout(spec), untie(spec, state), f"{spec.architecture} state")


def untie(spec: Spec, state):
    """`state` without the aliases of `spec.tied_weights()`: Hugging Face's state_dict() holds a
    tied tensor under both names (GPT-2's lm_head.weight is transformer.wte.weight); the layout
    holds it once. An alias must equal its target bit for bit: a differing one means the tensors
    were not tied, and loading one of them would silently drop the other."""
    aliases = {alias: target for alias, target in spec.tied_weights().items()
               if isinstance(state, dict) and alias in state}
    if not aliases:
        return state
    problems = [f"{alias}: expected the tied weight {target} (the same tensor), got "
                f"{'no ' + target if target not in state else 'a different tensor'}"
                for alias, target in aliases.items()
                if target not in state or not np.array_equal(np.asarray(state[alias]), np.asarray(state[target]))]
    if problems:
        raise StateError(problems, what=f"{spec.architecture} state")
    return {name: value for name, value in state.items() if name not in aliases}


def check_entries(expected: dict[str, Param], state, what: str) -> dict[str, np.ndarray]:
    """`check_state` against any layout (model or optimizer state); `what` names it in errors."""
    if not isinstance(state, dict):
        raise StateError([f"expected a dict of name -> numpy array, got {type(state).__name__}"], what=what)
    problems = []
    missing = [n for n in expected if n not in state]
    unexpected = [n for n in state if n not in expected]
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {missing}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {unexpected}")
    floats = sorted({np.asarray(state[n]).dtype.name for n, p in expected.items()
                     if n in state and p.dtype == "float"})
    float_dtype = floats[0] if len(floats) == 1 and floats[0] in FLOAT_DTYPES else None
    if float_dtype is None and floats:
        problems.append(f"float tensors: expected one dtype out of {list(FLOAT_DTYPES)}, got {floats}")
    for name, param in expected.items():
        if name not in state:
            continue
        value = state[name]
        if not isinstance(value, np.ndarray):
            problems.append(f"{name}: expected a numpy array, got {type(value).__name__}")
            continue
        if value.shape != param.shape:
            problems.append(f"{name}: expected shape {param.shape}, got {value.shape}")
        if param.dtype != "float" and value.dtype != np.dtype(param.dtype):
            problems.append(f"{name}: expected dtype {param.dtype}, got {value.dtype}")
        if np.issubdtype(value.dtype, np.floating):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            if bad:
                problems.append(f"{name}: expected finite values, got {bad} NaN/inf of {value.size}")
    if problems:
        raise StateError(problems, what=what)
    return state


def match_native_names(framework: str, spec: Spec, native: dict) -> dict:
    """A model's native variables keyed by canonical name, in layout order. A name set that
    differs from the layout is a bug in a model file or the name table; report both sides."""
    entries = layout(spec)
    missing = [n for n in entries if n not in native]
    extra = [n for n in native if n not in entries]
    if missing or extra:
        raise StateError([f"{framework} {spec.architecture} model has no variable for {missing}",
                          f"{framework} {spec.architecture} model has variables outside the layout: {extra}"],
                         what=f"{framework} {spec.architecture} model")
    return {name: native[name] for name in entries}


def save_state(path, state: dict[str, np.ndarray], spec: Spec | None = None, *,
               metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors checkpoint atomically (temp file in the same folder, then rename).

    With `spec`, the state is validated first and the spec is stored in the metadata; `metadata`
    adds string entries (e.g. the optimizer of a training checkpoint).
    """
    from safetensors.numpy import save

    path = Path(path)
    metadata = dict(metadata or {})
    if spec is not None:
        state = check_state(spec, state)
        metadata[SPEC_KEY] = json.dumps(spec.to_dict())
    payload = save({k: np.array(v, order="C") for k, v in state.items()}, metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a safetensors file, found nothing there")
    data = path.read_bytes()
    try:
        state = load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a safetensors file "
                              f"({len(data)} bytes read), could not parse it: {err}") from None
    return dict(state), header.get("__metadata__") or {}


def read_tensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, unvalidated (for files holding more than one state)."""
    return _read(path)[0]


def read_metadata(path) -> dict[str, str]:
    """A checkpoint's safetensors metadata (string to string)."""
    return _read(path)[1]


def read_spec(path) -> Spec | None:
    """The spec stored in a checkpoint's metadata, or None when it was saved without one."""
    _, metadata = _read(path)
    return spec_from_dict(json.loads(metadata[SPEC_KEY])) if SPEC_KEY in metadata else None


def load_state(path, spec: Spec | None = None) -> dict[str, np.ndarray]:
    """Read a safetensors checkpoint, validated against `spec` (or the spec stored in it)."""
    state, metadata = _read(path)
    if spec is None and SPEC_KEY in metadata:
        spec = spec_from_dict(json.loads(metadata[SPEC_KEY]))
    if spec is not None:
        state = check_state(spec, state)
        state = {name: state[name] for name in layout(spec)}  # module order, not file order
    return state
