"""Transfer learning: a trained state, a new classifier head, a frozen backbone.

`transfer(spec, state, num_classes, freeze="backbone")` keeps every backbone tensor of a trained
state (a torchvision checkpoint, say) bit for bit, re-initialises the classifier head
(`Spec.classifier`) for `num_classes` exactly as `parity.init_state` would for the new spec, and
names the parameters that stay frozen. `parity.training.train_trajectory` and `parity.loops.train`
take those names (`frozen=`) with the batch-norm policy, and each framework freezes them natively
(`<impl>/transfer.py`): torch `requires_grad_(False)`, Keras `trainable = False`, an optax mask.

What batch norm in a frozen backbone does in training mode (`batch_norm=`):

- "frozen": normalise with the running statistics and never update them (Keras' behaviour for a
  BatchNormalization layer with trainable=False; torch keeps those modules in eval mode, Flax sets
  their use_running_average);
- "train": normalise with the batch statistics and update the running ones; only the affine scale
  and shift are frozen (what torch and optax do when only the parameters are frozen; Keras freezes
  the layer's two variables instead of the layer).

`convert_checkpoint` turns a PyTorch `.pth` state dict into a safetensors checkpoint of a spec.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from parity.errors import CheckpointError, InputError
from parity.specs import Spec
from parity.state import check_state, init_tensor, layout, save_state, state_dtype

BATCH_NORM = ("frozen", "train")


@dataclasses.dataclass(frozen=True)
class Transfer:
    """A state ready to fine-tune: pass `state` as the initial state and `frozen`, `batch_norm`
    to `parity.loops.train` or `parity.training.train_trajectory`."""

    spec: Spec  # the source spec with num_classes replaced
    state: dict[str, np.ndarray]  # backbone tensors copied bit for bit, the head freshly initialised
    frozen: tuple[str, ...]  # canonical names of the parameters that do not train
    batch_norm: str  # one of BATCH_NORM: what a frozen batch norm does in training mode


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _parameters(spec: Spec) -> list[str]:
    return [name for name, param in layout(spec).items() if param.trainable]


def _modules(spec: Spec) -> list[str]:
    """Every module path that holds a parameter, ancestors included, in layout order."""
    modules = {}
    for name in _parameters(spec):
        parts = name.split(".")[:-1]
        modules.update((".".join(parts[:i]), None) for i in range(1, len(parts) + 1))
    return list(modules)


def _unknown_prefix(spec: Spec, prefix, modules: list[str]) -> InputError:
    """The error for a prefix that names no module, listing the modules where the user went wrong:
    the children of its deepest existing ancestor, or the top-level modules."""
    parts = str(prefix).split(".")
    parent = next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in modules), None)
    if parent is None:
        choices, where = [m for m in modules if "." not in m], "the top-level modules"
    else:
        choices = [m for m in modules if m.startswith(parent + ".") and "." not in m[len(parent) + 1:]]
        choices, where = (choices, f"the modules in {parent!r}") if choices else ([parent], "its module")
    return InputError(f"freeze: {prefix!r} is not a module of {spec.architecture}; expected a module path "
                      f"prefix, e.g. one of {where}: {choices}")


def frozen_parameters(spec: Spec, freeze) -> tuple[str, ...]:
    """The parameter names `freeze` selects: "backbone" (all but the `spec.classifier` head), "none",
    or a list of module prefixes ("layer1", "layer2.0.conv1", ...)."""
    parameters = _parameters(spec)
    if freeze == "backbone":
        return tuple(n for n in parameters if not _under(n, spec.classifier))
    if freeze == "none":
        return ()
    if isinstance(freeze, str) or not isinstance(freeze, (list, tuple)):
        raise InputError(f"freeze: expected 'backbone', 'none' or a list of module prefixes, got {freeze!r}")
    modules = _modules(spec)
    for prefix in freeze:
        if prefix not in modules:
            raise _unknown_prefix(spec, prefix, modules)
    return tuple(n for n in parameters if any(_under(n, prefix) for prefix in freeze))


def check_frozen(spec: Spec, frozen, batch_norm: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate frozen parameter names and a batch-norm policy for `spec`; return them with the
    batch-norm modules that run on their running statistics (the wholly frozen ones, under "frozen")."""
    if isinstance(frozen, str) or not isinstance(frozen, (list, tuple)):
        raise InputError(f"frozen: expected a list of parameter names (see parity.transfer), got {frozen!r}")
    if batch_norm not in BATCH_NORM:
        raise InputError(f"batch_norm: expected one of {list(BATCH_NORM)}, got {batch_norm!r}")
    parameters = _parameters(spec)
    unknown = [n for n in frozen if n not in parameters]
    if unknown:
        raise InputError(f"frozen: expected trainable parameters of {spec.architecture} (see parity.layout), "
                         f"got {unknown}")
    chosen = set(frozen)
    frozen = tuple(n for n in parameters if n in chosen)  # layout order, once each
    norms = []
    for name, param in layout(spec).items():
        if param.init != "norm_mean":
            continue
        module = name.rsplit(".", 1)[0]
        own = [n for n in parameters if _under(n, module)]
        if batch_norm == "frozen" and own and set(own) <= chosen:
            norms.append(module)
        elif batch_norm == "frozen" and set(own) & chosen:
            # Keras' switch to running statistics is the layer's trainable flag, which freezes both.
            raise InputError(f"frozen: batch norm {module!r} with batch_norm='frozen': expected its parameters "
                             f"{own} frozen together, got {sorted(set(own) & set(frozen))} only")
    return frozen, tuple(norms)


def transfer(spec: Spec, state: dict, num_classes: int, freeze="backbone", *, batch_norm: str = "frozen",
             seed: int = 0) -> Transfer:
    """`state` (trained for `spec`) with a new `num_classes` head and the parameters to freeze.

    The head is `spec.classifier`, re-initialised as `parity.init_state(new_spec, seed)` would;
    every other tensor, batch-norm buffers included, is copied bit for bit. `freeze`: "backbone"
    (everything but the head), "none", or a list of module prefixes. `batch_norm`: see the module doc.
    """
    if not isinstance(spec, Spec):
        raise InputError(f"transfer: expected a parity spec (see parity.spec), got {type(spec).__name__}")
    if "num_classes" not in spec.field_names():
        raise InputError(f"transfer: {spec.architecture} has no num_classes to replace (its fields: "
                         f"{spec.field_names()})")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise InputError(f"num_classes: expected a positive int, got {num_classes!r}")
    check_state(spec, state)
    new_spec = spec.replace(num_classes=num_classes)
    dtype = state_dtype(state)
    new_state = {name: init_tensor(name, param, seed, dtype) if _under(name, spec.classifier)
                 else np.array(state[name], copy=True) for name, param in layout(new_spec).items()}
    frozen, _ = check_frozen(new_spec, frozen_parameters(new_spec, freeze), batch_norm)
    return Transfer(new_spec, new_state, frozen, batch_norm)


def _read_torch(path: Path):
    """torch.load with weights_only=True: tensors and plain containers only; a pickle that would
    build any other object (or run code) is refused before anything is built."""
    import pickle

    import torch

    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a PyTorch .pth file, found nothing there")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = (f"it references {found.group(1)}, neither a tensor nor a plain container (a whole pickled model? "
                f"save its state_dict() instead)") if found else "it is not a pickle of tensors"
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a state dict of tensors; "
                              f"torch.load(weights_only=True) refused the file: {what}") from None
    except (RuntimeError, EOFError, ValueError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a PyTorch .pth file, could not read it: "
                              f"{err}") from None


def convert_checkpoint(source, out, spec: Spec) -> Path:
    """A PyTorch `.pth` state dict (torchvision's format; or a dict holding it under "state_dict" or
    "model") as a safetensors checkpoint of `spec`: validated as a whole, every problem listed,
    written atomically with the spec in its metadata. Returns the written path."""
    import torch  # here, not at the top: `import parity` loads no framework

    source = Path(source)
    loaded = _read_torch(source)
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict):
        raise CheckpointError(f"checkpoint {str(source)!r}: expected a state dict (name -> tensor), "
                              f"got {type(loaded).__name__}")
    others = {name: type(value).__name__ for name, value in loaded.items() if not isinstance(value, torch.Tensor)}
    if others:
        raise CheckpointError(f"checkpoint {str(source)!r}: expected tensors only, got {others}")
    state = {name: value.detach().cpu().numpy() for name, value in loaded.items()}
    return save_state(out, state, spec=spec)
