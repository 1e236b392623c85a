"""The README's "Query it from your RAG app" snippets, read so that tests run them as written."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["README", "readme_snippet"]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet(name: str) -> str:
    """The code of the python block right after ``<!-- rag:{name} -->`` in README.md
    (e.g. ``"chroma:langchain"``).

    Raises:
        LookupError: no such marker, or no python block after it.
    """
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- rag:{re.escape(name)} -->\s*```python\n(.*?)```", text, re.S)
    if found is None:
        raise LookupError(f"README.md has no python block after <!-- rag:{name} -->")
    return found.group(1)
