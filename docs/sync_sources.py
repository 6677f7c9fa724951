"""Keep the code shown in docs/ identical to the source files it quotes.

A block is a `<!-- source: path/to/file.py -->` line followed by a fenced code block; this
script rewrites each block's body from the file. `--check` exits 1 when a page is stale
(tests/test_docs.py runs it), so the side-by-side code in the docs cannot drift.

    python docs/sync_sources.py          # rewrite the pages
    python docs/sync_sources.py --check  # report stale pages
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- source: (?P<path>[^ ]+) -->\n```python\n)(?P<body>.*?)(```)", re.S)


def synced(text: str) -> str:
    def replace(match):
        source = (ROOT / match["path"]).read_text(encoding="utf-8")
        return f"{match.group(1)}{source}{match.group(4)}"
    return BLOCK.sub(replace, text)


def main(argv: list[str]) -> int:
    stale = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        new = synced(text)
        if new != text:
            stale.append(page.name)
            if "--check" not in argv:
                page.write_text(new, encoding="utf-8")
    if stale:
        print(("stale: " if "--check" in argv else "updated: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
