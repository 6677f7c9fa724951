"""The docs show the real code and cite real tests."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import parity

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))


def test_code_on_the_pages_is_the_source_code():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "sync_sources.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_test_exists(page):
    for path, name in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page.read_text(encoding="utf-8")):
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), f"{page.name}: {path}::{name}"


def test_every_architecture_has_a_page():
    for name in parity.architectures():
        page = ROOT / "docs" / type(parity.spec(name)).docs_page()
        assert page.exists() and name in page.read_text(encoding="utf-8"), f"{name}: {page.name}"
