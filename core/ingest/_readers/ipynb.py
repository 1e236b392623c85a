"""``.ipynb``: one document per notebook (nbformat 4), its cells in order.

Markdown cells are kept as written (their ``#`` headings make the ``section`` spans); code
cells become fenced blocks in the kernel's language; raw cells are kept as text. Outputs
that are text (``stream``, and ``text/plain`` of results and displays) follow their cell as a
fenced ``output`` block, so an executed notebook keeps what it printed; an unexecuted one (no
outputs) is read just the same. The title is the notebook metadata's ``title``, else the
first heading. Not read: images and other rich outputs (HTML, plots), attachments, widgets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)
from e5_integrations.ingest._readers._markdown import TextBuilder

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _source(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return value if isinstance(value, str) else ""


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _markdown(builder: TextBuilder, text: str) -> None:
    """A markdown cell: its headings become headings, the rest paragraphs, fences kept whole."""
    block: list[str] = []
    fenced = False

    def flush() -> None:
        if block:
            builder.paragraph("\n".join(block))
            block.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            flush()
            builder.heading(len(heading.group(1)), heading.group(2))
        elif not line.strip() and not fenced:
            flush()
        else:
            block.append(line)
    flush()


def _outputs(outputs: Any) -> str:
    texts = []
    for output in outputs if isinstance(outputs, list) else []:
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            texts.append(_source(output.get("text")))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data")
            if isinstance(data, dict):
                texts.append(_source(data.get("text/plain")))
        elif kind == "error":
            texts.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    return "\n".join(text.rstrip("\n") for text in texts if text.strip())


def read_ipynb(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of an ``.ipynb`` notebook (see the module docs)."""
    with source.open() as handle:
        data = handle.read()
    if not data:
        raise RecordError("the file is empty (0 bytes); expected a Jupyter notebook (JSON)")
    try:
        notebook = json.loads(data)
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 at byte {exc.start}; a notebook is UTF-8 JSON") from exc
    except json.JSONDecodeError as exc:
        raise RecordError(
            f"not a notebook: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        major = notebook.get("nbformat") if isinstance(notebook, dict) else None
        raise RecordError(
            f"not an nbformat 4 notebook (nbformat {major!r}, no 'cells' list); "
            "upgrade it with: jupyter nbconvert --to notebook --inplace FILE"
        )
    metadata: dict[str, Any] = _mapping(notebook.get("metadata"))
    kernel = _mapping(metadata.get("kernelspec"))
    info = _mapping(metadata.get("language_info"))
    language = str(info.get("name") or kernel.get("language") or "")
    builder = TextBuilder()
    for cell in notebook["cells"]:
        if not isinstance(cell, dict):
            continue
        text = _source(cell.get("source"))
        kind = cell.get("cell_type")
        if kind == "markdown":
            _markdown(builder, text)
        elif kind == "code":
            builder.code(text, language)
            output = _outputs(cell.get("outputs"))
            if output:
                builder.code(output, "output")
        else:
            builder.paragraph(text)
    text, spans = builder.finish()
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    title = title or builder.first_heading
    yield (
        0,
        Document(
            id=source.file_id,
            text=text,
            source=source.file_id,
            metadata={"title": title} if title else {},
            spans=spans,
        ),
    )


register_reader(read_ipynb, ".ipynb", whole_file=True)
