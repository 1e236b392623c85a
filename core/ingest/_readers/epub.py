"""``.epub``: one document per book, its chapters in spine order.

The zip is opened with :class:`~._safe.SafeZip`; ``META-INF/container.xml`` names the
package (OPF) file, whose spine gives the reading order; each (X)HTML chapter is read by
the ``.html`` reader's converter, so headings make the ``section`` spans and tables,
lists and code keep their shape. The title is the OPF's ``dc:title``, else the first
heading. Parsed without third-party libraries (EbookLib is AGPL). Not read: images, fonts,
CSS, scripts, DRM-protected books (refused: their chapters are encrypted).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from urllib.parse import unquote

from e5_integrations.ingest._readers._base import (
    Document,
    Fields,
    Item,
    RecordError,
    SourceFile,
    register_reader,
)
from e5_integrations.ingest._readers._ooxml import DC
from e5_integrations.ingest._readers._safe import SafeZip
from e5_integrations.ingest._readers.html import HtmlConverter, decode_html

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_CHAPTER_TYPES = ("application/xhtml+xml", "text/html", "application/x-dtbook+xml")


def _package_path(archive: SafeZip) -> str:
    if archive.has("META-INF/encryption.xml") and b"EncryptedData" in archive.read("META-INF/encryption.xml"):
        raise RecordError("the EPUB is DRM-protected (its chapters are encrypted); remove the DRM to read it")
    if not archive.has("META-INF/container.xml"):
        raise RecordError("not an EPUB: the zip has no META-INF/container.xml")
    for rootfile in archive.xml("META-INF/container.xml").iter(_CONTAINER + "rootfile"):
        path = rootfile.get("full-path")
        if path:
            return path
    raise RecordError("not an EPUB: META-INF/container.xml names no package (rootfile) file")


def read_epub(source: SourceFile, fields: Fields) -> Iterator[tuple[int, Item]]:
    """The one document of an ``.epub`` book, chapters in spine order (see the module docs)."""
    converter = HtmlConverter()
    with SafeZip(source, "EPUB") as archive:
        package_path = _package_path(archive)
        package = archive.xml(package_path)
        base = posixpath.dirname(package_path)
        manifest = {
            item.get("id", ""): (item.get("href", ""), item.get("media-type", ""))
            for item in package.iter(_OPF + "item")
        }
        title_node = package.find(f"{_OPF}metadata/{DC}title")
        title = (title_node.text or "").strip() if title_node is not None else ""
        for itemref in package.iter(_OPF + "itemref"):
            href, media_type = manifest.get(itemref.get("idref", ""), ("", ""))
            if not href or media_type not in _CHAPTER_TYPES:
                continue
            member = posixpath.normpath(posixpath.join(base, unquote(href)))
            if not archive.has(member):
                raise RecordError(f"the EPUB's spine names {member!r}, which is not in the archive")
            page, _ = decode_html(archive.read(member))
            converter.feed(page)
            converter.end_page()
    text, spans = converter.builder.finish()
    title = title or converter.builder.first_heading or ""
    metadata = {"title": title} if title else {}
    yield 0, Document(id=source.file_id, text=text, source=source.file_id, metadata=metadata, spans=spans)


register_reader(read_epub, ".epub", whole_file=True)
