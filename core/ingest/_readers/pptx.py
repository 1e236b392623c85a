"""``.pptx``: one document per file, one span per slide (``{"slide": n}``), in slide order.

Each slide is its title as a ``#`` heading (which also makes the slide's ``section``), then
its shapes' text in the slide's order (group shapes looked into): body placeholders as
``-`` items indented by level, other text boxes as paragraphs, tables as pipe tables, then
the speaker notes as a ``Notes:`` paragraph. The title is the core properties' title, else
the first slide's title. Not read: images, charts, SmartArt, embedded objects, slide masters.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import Element

from e5_integrations.ingest._readers._base import Document, Fields, Item, SourceFile, register_reader
from e5_integrations.ingest._readers._markdown import TextBuilder, inline
from e5_integrations.ingest._readers._ooxml import MC, A, P, R, core_title, main_part, relationships
from e5_integrations.ingest._readers._safe import SafeZip

_TITLES = ("title", "ctrTitle")
_LISTS = ("body", "obj")


def _paragraphs(body: Element) -> list[tuple[int, str]]:
    """(level, text) of each ``a:p`` of a text body."""
    found = []
    for paragraph in body.findall(A + "p"):
        parts = []
        for node in paragraph:
            if node.tag in (A + "r", A + "fld"):
                parts.append("".join(t.text or "" for t in node.iter(A + "t")))
            elif node.tag == A + "br":
                parts.append("\n")
        properties = paragraph.find(A + "pPr")
        level = properties.get("lvl", "0") if properties is not None else "0"
        found.append((int(level) if level.isdigit() else 0, "".join(parts)))
    return found


def _placeholder(shape: Element) -> str | None:
    """The placeholder type of a shape (``"obj"`` for an untyped one), or None."""
    for holder in shape.iter(P + "ph"):
        return holder.get("type", "obj")
    return None


def _table(frame: Element) -> list[list[str]]:
    rows = []
    for table in frame.iter(A + "tbl"):
        for row in table.findall(A + "tr"):
            rows.append(
                [inline("".join(t.text or "" for t in cell.iter(A + "t"))) for cell in row.findall(A + "tc")]
            )
        break
    return rows


def _shapes(tree: Element) -> Iterator[Element]:
    """The shapes of a shape tree in order, looking into groups and alternate content."""
    stack = [iter(tree)]
    while stack:
        shape = next(stack[-1], None)
        if shape is None:
            stack.pop()
        elif shape.tag in (P + "grpSp", MC + "AlternateContent", MC + "Choice"):
            stack.append(iter(shape))
        elif shape.tag in (P + "sp", P + "graphicFrame"):
            yield shape


def _slide(builder: TextBuilder, slide: Element) -> str | None:
    tree = slide.find(f"{P}cSld/{P}spTree")
    if tree is None:
        return None
    shapes = list(_shapes(tree))
    title = None
    for shape in shapes:
        body = shape.find(P + "txBody")
        if _placeholder(shape) in _TITLES and body is not None:
            title = inline(" ".join(text for _, text in _paragraphs(body)))
            if title:
                builder.heading(1, title)
                break
    for shape in shapes:
        if shape.tag == P + "graphicFrame":
            builder.table(_table(shape))
            continue
        body = shape.find(P + "txBody")
        kind = _placeholder(shape)
        if body is None or kind in _TITLES:
            continue
        paragraphs = [(level, text.strip()) for level, text in _paragraphs(body) if text.strip()]
        if kind in _LISTS:
            for level, text in paragraphs:
                builder.list_item(text, depth=level)
            builder.end_list()
        else:
            builder.paragraph("\n".join(text for _, text in paragraphs))
    return title


def _notes(notes: Element) -> str:
    lines: list[str] = []
    for shape in notes.iter(P + "sp"):
        body = shape.find(P + "txBody")
        if _placeholder(shape) == "body" and body is not None:
            lines.extend(text.strip() for _, text in _paragraphs(body) if text.strip())
    return "\n".join(lines)


def read_pptx(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of a ``.pptx`` file, a span per slide (see the module docs)."""
    builder = TextBuilder()
    first_title = None
    with SafeZip(source, "PPTX") as archive:
        part = main_part(archive, "ppt/presentation.xml")
        presentation = archive.xml(part)
        rels = relationships(archive, part)
        title = core_title(archive)
        slide_ids = presentation.find(P + "sldIdLst")
        for number, slide_id in enumerate(slide_ids if slide_ids is not None else [], start=1):
            target = rels.get(slide_id.get(R + "id", ""))
            if target is None:
                continue
            builder.start_unit({"slide": number})
            slide_title = _slide(builder, archive.xml(target[1]))
            first_title = first_title or slide_title
            for kind, notes_part in relationships(archive, target[1]).values():
                if kind.endswith("/notesSlide") and archive.has(notes_part):
                    notes = _notes(archive.xml(notes_part))
                    if notes:
                        builder.paragraph("Notes: " + notes)
    text, spans = builder.finish()
    title = title or first_title
    metadata = {"title": title} if title else {}
    yield 0, Document(id=source.file_id, text=text, source=source.file_id, metadata=metadata, spans=spans)


register_reader(read_pptx, ".pptx", whole_file=True)
