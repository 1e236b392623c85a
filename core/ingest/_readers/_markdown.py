"""Building a structured document's text in a Markdown-like form, with its spans.

Readers of structured formats (Office, HTML, EPUB, notebooks) add blocks in reading order
(headings, paragraphs, list items, tables, code) to a :class:`TextBuilder`, which joins them
with blank lines, keeps the heading path, and records :class:`~._base.Span` s: one per
section (``{"section": "Intro > Setup"}``) and, where the reader opens them, one per unit
(``{"slide": 3}``, ``{"sheet": "Q1"}``). Every span is a range of the final text, so a
chunk's text is always an exact substring of the document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from e5_integrations.ingest._readers._base import Span

__all__ = ["TextBuilder", "inline", "pipe_table"]

_SPACES = re.compile(r"\s+")


def inline(text: str) -> str:
    """``text`` on one line, runs of whitespace collapsed to one space."""
    return _SPACES.sub(" ", text).strip()


def _cell(text: str) -> str:
    return inline(text).replace("|", "\\|")


def pipe_table(rows: Sequence[Sequence[str]]) -> str:
    """A Markdown pipe table; the first row is the header. Short rows are padded."""
    width = max((len(row) for row in rows), default=0)
    if not width:
        return ""
    lines = []
    for number, row in enumerate(rows):
        cells = [_cell(cell) for cell in row] + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if number == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)


class TextBuilder:
    """Blocks in reading order -> one text, with section and unit spans."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._headings: list[tuple[int, str]] = []
        self._section: tuple[int, str] | None = None  # (start, path) of the open section span
        self._unit: tuple[int, Mapping[str, Any]] | None = None
        self._last_end = 0  # end of the last block written
        self.spans: list[Span] = []
        self.first_heading: str | None = None
        self._in_list = False

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self._parts)

    def _write(self, block: str) -> None:
        block = block.strip("\n")
        if not block.strip():
            return
        self._in_list = False
        if self._length:
            self._parts.append("\n\n")
            self._length += 2
        self._parts.append(block)
        self._length += len(block)
        self._last_end = self._length

    def _next_start(self) -> int:
        """Where the next block will start."""
        return self._length + 2 if self._length else 0

    def _close_section(self) -> None:
        if self._section is not None:
            start, path = self._section
            if self._last_end > start:
                self.spans.append(Span(start, self._last_end, {"section": path}))
            self._section = None

    def heading(self, level: int, text: str) -> None:
        """A heading of ``level`` (1 = top): written as ``#`` x level, and a new section."""
        text = inline(text)
        if not text:
            return
        level = max(1, min(level, 6))
        self._close_section()
        while self._headings and self._headings[-1][0] >= level:
            self._headings.pop()
        self._headings.append((level, text))
        if self.first_heading is None:
            self.first_heading = text
        self._section = (self._next_start(), " > ".join(title for _, title in self._headings))
        self._write("#" * level + " " + text)

    def paragraph(self, text: str) -> None:
        """A paragraph (kept as given, trimmed)."""
        self._write(text.strip())

    def list_item(
        self, text: str, *, ordered: bool = False, number: int = 1, depth: int = 0, continued: bool = False
    ) -> None:
        """A list item: ``- text`` or ``N. text``, indented two spaces per ``depth``.

        ``continued``: more text of the item before (a second paragraph), indented under it.
        """
        text = text.strip()
        if not text:
            return
        marker = "  " if continued else f"{number}." if ordered else "-"
        line = "  " * depth + marker + " " + text.replace("\n", "\n" + "  " * (depth + 1))
        # consecutive items of a list are one block: no blank line between them
        if self._parts and self._last_end == self._length and self._in_list:
            self._parts.append("\n" + line)
            self._length += 1 + len(line)
            self._last_end = self._length
            return
        self._write(line)
        self._in_list = True  # after _write, which ends any list

    def end_list(self) -> None:
        """The list ends; the next item starts a new block."""
        self._in_list = False

    def table(self, rows: Sequence[Sequence[str]]) -> None:
        """A table, written as a pipe table (the first row is the header)."""
        self._write(pipe_table([row for row in rows if any(cell.strip() for cell in row)]))

    def code(self, text: str, language: str = "") -> None:
        """A fenced code block."""
        if not text.strip():
            return
        fence = "```"
        while fence in text:
            fence += "`"
        self._write(f"{fence}{language}\n{text.rstrip()}\n{fence}")

    def start_unit(self, metadata: Mapping[str, Any]) -> None:
        """Open a unit span (a slide, a sheet); it ends at the next unit or :meth:`finish`.

        A unit starts with no heading path: a slide's sections are its own.
        """
        self.end_unit()
        self._close_section()
        self._headings.clear()
        self._unit = (self._next_start(), dict(metadata))

    def end_unit(self) -> None:
        """Close the open unit span, if any."""
        if self._unit is not None:
            start, metadata = self._unit
            if self._last_end > start:
                self.spans.append(Span(start, self._last_end, metadata))
            self._unit = None

    def finish(self) -> tuple[str, tuple[Span, ...]]:
        """The text and its spans, sorted by start."""
        self.end_list()
        self._close_section()
        self.end_unit()
        return self.text, tuple(sorted(self.spans, key=lambda span: (span.start, span.end)))
