"""The three implementation trees mirror each other: same files, same public names, same order."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = ("pytorch_impl", "keras_impl", "jax_impl")


def _files(tree):
    return {p.relative_to(ROOT / tree).as_posix() for p in (ROOT / tree).rglob("*.py")}


def _public_definitions(path):
    module = ast.parse(path.read_text(encoding="utf-8"))
    return [node.name for node in module.body
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_")]


ALL_FILES = sorted(set().union(*(_files(t) for t in TREES)))


def test_same_files_in_every_tree():
    files = {t: _files(t) for t in TREES}
    for tree in TREES[1:]:
        assert files[tree] == files[TREES[0]], (tree, files[tree] ^ files[TREES[0]])


@pytest.mark.parametrize("relative", ALL_FILES)
def test_same_public_classes_and_functions_in_the_same_order(relative):
    definitions = {t: _public_definitions(ROOT / t / relative) for t in TREES if (ROOT / t / relative).exists()}
    assert len(definitions) == len(TREES), f"{relative} missing from {set(TREES) - set(definitions)}"
    reference = definitions[TREES[0]]
    for tree in TREES[1:]:
        assert definitions[tree] == reference, f"{tree}/{relative}: {definitions[tree]} != {reference}"


def test_every_registered_architecture_has_a_model_in_every_framework():
    import parity

    for tree in TREES:
        source = (ROOT / tree / "models" / "__init__.py").read_text()
        for name in parity.architectures():
            assert f'"{name}"' in source, (tree, name)
