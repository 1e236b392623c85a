"""What the Office Open XML readers (``.docx``, ``.pptx``, ``.xlsx``) share: package parts,
relationships and the core properties' title, all read through :class:`~._safe.SafeZip`."""

from __future__ import annotations

import posixpath
from xml.etree.ElementTree import Element

from e5_integrations.ingest._readers._safe import SafeZip

__all__ = ["A", "DC", "MC", "P", "R", "RELS", "S", "W", "core_title", "main_part", "relationships", "text_of"]

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
DC = "{http://purl.org/dc/elements/1.1/}"


def _rels_name(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


def relationships(archive: SafeZip, part: str) -> dict[str, tuple[str, str]]:
    """``part``'s relationships: id -> (type, target part name); empty if it has none.

    ``part`` is ``""`` for the package's own relationships (``_rels/.rels``). External
    targets (hyperlinks) are left out: nothing outside the archive is ever opened.
    """
    name = "_rels/.rels" if not part else _rels_name(part)
    if not archive.has(name):
        return {}
    base = posixpath.dirname(part)
    found: dict[str, tuple[str, str]] = {}
    for rel in archive.xml(name).iter(RELS + "Relationship"):
        if rel.get("TargetMode") == "External":
            continue
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
        found[rel.get("Id", "")] = (rel.get("Type", ""), posixpath.normpath(path))
    return found


def main_part(archive: SafeZip, default: str) -> str:
    """The package's main document part (``word/document.xml`` ...), from ``_rels/.rels``."""
    for kind, target in relationships(archive, "").values():
        if kind.endswith("/officeDocument"):
            return target
    return default


def core_title(archive: SafeZip) -> str | None:
    """The title in ``docProps/core.xml``, if set."""
    if not archive.has("docProps/core.xml"):
        return None
    title = archive.xml("docProps/core.xml").find(DC + "title")
    text = (title.text or "").strip() if title is not None else ""
    return text or None


def text_of(element: Element, tag: str) -> str:
    """The concatenated text of ``element``'s descendants named ``tag``."""
    return "".join(node.text or "" for node in element.iter(tag))
