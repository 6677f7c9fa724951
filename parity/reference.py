"""The public reference implementations whose state dicts are canonical, for compatibility checks.

Optional, test-time dependencies: torchvision (the CNNs) and Hugging Face transformers (BERT,
GPT-2, T5). Nothing in the core imports them.
"""
from __future__ import annotations

import importlib.util
import sys
import types

from parity.errors import FrameworkError


def import_torchvision():
    """torchvision's model code is pure Python, but importing it registers fake kernels for its
    compiled ops (`torchvision._meta_registrations`), which fails where the wheel's C++ ops do not
    load (the CPU build of torch 2.13 here: "operator torchvision::nms does not exist"). The
    models need none of those ops, so that one module is replaced by an empty one."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    try:
        import torchvision
    except Exception as err:  # ImportError, or the RuntimeError of a mismatched wheel
        raise FrameworkError(f"torchvision: expected an importable torchvision (pip install -e '.[test]'), "
                             f"got {type(err).__name__}: {err}") from err
    return torchvision


def import_transformers():
    """Hugging Face transformers, whose import pulls in torchvision when it is installed (and
    crashes there the same way): torchvision goes through `import_torchvision` first."""
    if importlib.util.find_spec("torchvision") is not None:
        import_torchvision()
    try:
        import transformers
    except Exception as err:
        raise FrameworkError(f"transformers: expected an importable transformers (pip install -e '.[test]'), "
                             f"got {type(err).__name__}: {err}") from err
    return transformers
