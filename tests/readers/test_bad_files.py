"""Hostile and broken files: each is refused with the file (and the member) named, quickly,
without expanding a bomb, resolving an entity, recursing to death or storing an empty document."""

from __future__ import annotations

import gzip
import http.server
import io
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest._readers import Document, SourceFile, _safe, compressed
from e5_integrations.ingest._sources import SourceProblem, read_source_file
from tests.readers.samples import docx_bytes, xlsx_bytes


def _read(path: Path, on_error: str = "fail") -> tuple[list[Document], list[SourceProblem]]:
    problems: list[SourceProblem] = []
    documents = list(
        read_source_file(SourceFile(path, path.name), on_error=on_error, on_problem=problems.append)  # type: ignore[arg-type]
    )
    return documents, problems


def _refused(path: Path, *phrases: str) -> str:
    """The error reading ``path`` under ``--on-error fail`` (it must name the file and ``phrases``)."""
    with pytest.raises(SourceError) as raised:
        _read(path)
    message = str(raised.value)
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


def _with_member(archive: bytes, name: str, data: bytes, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    """``archive`` with member ``name`` replaced by ``data``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info))
        target.writestr(name, data, compress_type=compress)
    return out.getvalue()


def _member(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        return source.read(name)


# -- zip bombs -------------------------------------------------------------------------------
def test_a_docx_zip_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    document = _member(docx_bytes(), "word/document.xml")
    head, tail = document.split(b"</w:body>")
    # 24 MiB of XML whitespace deflates to ~24 KiB: a 1000x member
    bomb = _with_member(docx_bytes(), "word/document.xml", head + b" " * (24 << 20) + b"</w:body>" + tail)
    path = tmp_path / "bomb.docx"
    path.write_bytes(bomb)
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        message = _refused(path, "word/document.xml", "zip bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "x, the limit is 200x" in message
    assert peak < 8 << 20  # the 24 MiB were never expanded


def test_a_member_over_the_size_limit_is_refused_by_its_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_safe, "MAX_MEMBER_BYTES", 1 << 20)
    path = tmp_path / "big.xlsx"
    sheet = _member(xlsx_bytes(), "xl/worksheets/sheet1.xml")
    path.write_bytes(
        _with_member(xlsx_bytes(), "xl/worksheets/sheet1.xml", sheet + b" " * (2 << 20), zipfile.ZIP_STORED)
    )
    _refused(path, "xl/worksheets/sheet1.xml", "declares", "over the limit")


def test_a_member_that_expands_past_its_declared_size_is_refused(tmp_path: Path) -> None:
    archive = _with_member(docx_bytes(), "word/document.xml", _member(docx_bytes(), "word/document.xml"))
    # make the central directory and the local header claim the member is 100 bytes
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        info = source.getinfo("word/document.xml")
    data = bytearray(archive)
    real = info.file_size.to_bytes(4, "little")
    offset = info.header_offset + 22
    assert data[offset : offset + 4] == real
    data[offset : offset + 4] = (100).to_bytes(4, "little")
    position = 0
    while True:  # find the central directory entry of the member and patch its size
        position = data.find(b"PK\x01\x02", position)
        assert position >= 0
        name_length = int.from_bytes(data[position + 28 : position + 30], "little")
        if data[position + 46 : position + 46 + name_length] == b"word/document.xml":
            data[position + 24 : position + 28] = (100).to_bytes(4, "little")
            break
        position += 4
    path = tmp_path / "liar.docx"
    path.write_bytes(bytes(data))
    _refused(path, "word/document.xml")


# -- XML entities ----------------------------------------------------------------------------
class _Listener:
    """A real local HTTP server that counts the requests it gets."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"REMOTE-ENTITY-TEXT")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/entity"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.close()


def _xxe(xml: bytes, root: bytes, secret: Path, url: str) -> bytes:
    """``xml`` with a DOCTYPE declaring a file and a network entity, both used in the text."""
    doctype = (
        b"<!DOCTYPE " + root + b' [<!ENTITY secret SYSTEM "file://' + str(secret).encode() + b'">'
        b'<!ENTITY remote SYSTEM "' + url.encode() + b'">]>'
    )
    declaration_end = xml.index(b"?>") + 2 if xml.startswith(b"<?xml") else 0
    return xml[:declaration_end] + doctype + xml[declaration_end:]


def test_an_external_entity_in_a_docx_is_never_resolved(tmp_path: Path, listener: _Listener) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    document = _member(docx_bytes(), "word/document.xml")
    document = document.replace(b"Managers approve", b"&secret; &remote; Managers approve")
    path = tmp_path / "xxe.docx"
    path.write_bytes(
        _with_member(docx_bytes(), "word/document.xml", _xxe(document, b"w:document", secret, listener.url))
    )
    message = _refused(path, "word/document.xml", "DOCTYPE")
    documents, problems = _read(path, on_error="skip")
    assert documents == [] and len(problems) == 1
    assert "TOP-SECRET-CONTENT" not in message + str(problems)
    assert listener.hits == []


@pytest.mark.parametrize("member", ["xl/styles.xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"])
def test_an_external_entity_in_an_xlsx_is_never_resolved(
    tmp_path: Path, listener: _Listener, member: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    workbook = xlsx_bytes()
    root = {
        "xl/styles.xml": b"styleSheet",
        "xl/workbook.xml": b"workbook",
        "xl/worksheets/sheet1.xml": b"worksheet",
    }
    path = tmp_path / "xxe.xlsx"
    path.write_bytes(
        _with_member(workbook, member, _xxe(_member(workbook, member), root[member], secret, listener.url))
    )
    message = _refused(path, member, "DOCTYPE")
    assert "TOP-SECRET-CONTENT" not in message
    assert listener.hits == []


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    lol = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (level, b"&lol%d;" % (level - 1) * 10) for level in range(1, 10)
    )
    document = _member(docx_bytes(), "word/document.xml")
    declaration_end = document.index(b"?>") + 2
    bomb = document[:declaration_end] + b"<!DOCTYPE w:document [" + lol + b"]>" + document[declaration_end:]
    bomb = bomb.replace(b"Managers approve", b"&lol9; Managers approve")
    path = tmp_path / "laughs.docx"
    path.write_bytes(_with_member(docx_bytes(), "word/document.xml", bomb))
    _refused(path, "DOCTYPE")


def test_xml_nested_past_the_depth_limit_is_refused(tmp_path: Path) -> None:
    document = _member(docx_bytes(), "word/document.xml")
    depth = 2_000
    nested = b"<w:sdt><w:sdtContent>" * depth + b"</w:sdtContent></w:sdt>" * depth
    path = tmp_path / "deep.docx"
    path.write_bytes(
        _with_member(docx_bytes(), "word/document.xml", document.replace(b"</w:body>", nested + b"</w:body>"))
    )
    _refused(path, "nested deeper than 1000 levels")


# -- deeply nested HTML ----------------------------------------------------------------------
def test_100k_nested_divs_are_read_flattened(tmp_path: Path) -> None:
    path = tmp_path / "deep.html"
    depth = 100_000
    path.write_text(
        "<html><body>" + "<div>" * depth + "deep words" + "</div>" * depth + "<p>after</p></body></html>"
    )
    documents, problems = _read(path)
    assert problems == []
    assert [document.text for document in documents] == ["deep words\n\nafter"]


def test_100k_nested_lists_and_tables_are_read(tmp_path: Path) -> None:
    path = tmp_path / "deep-lists.html"
    depth = 20_000
    path.write_text("<ul><li>" * depth + "bottom" + "</li></ul>" * depth + "<table><tr><td>" * depth + "cell")
    documents, _ = _read(path)
    assert "bottom" in documents[0].text and "cell" in documents[0].text


# -- files that are not what they say --------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "data", "phrase"),
    [
        ("notes.docx", b"These are plain notes, not a Word file.\n", "looks like plain text"),
        ("page.pptx", b"<html><body>a web page</body></html>", "looks like XML or HTML"),
        ("scan.xlsx", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "it is a PDF"),
        ("legacy.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504, "password-protected"),
        ("book.epub", b"PK\x03\x04" + b"\0" * 40, "corrupt or truncated"),
    ],
)
def test_a_file_whose_extension_lies_is_named(tmp_path: Path, name: str, data: bytes, phrase: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    _refused(path, phrase)


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx", ".epub"])
def test_a_zero_byte_office_file_is_an_error_not_an_empty_document(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / ("empty" + suffix)
    path.touch()
    _refused(path, "the file is empty (0 bytes)")
    documents, problems = _read(path, on_error="skip")
    # a whole-file format that cannot be read is an unreadable file (its stored chunks stay)
    assert documents == [] and [problem.kind for problem in problems] == ["unreadable file"]


def test_a_docx_without_its_document_part_is_named(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
    path = tmp_path / "hollow.docx"
    path.write_bytes(out.getvalue())
    _refused(path, "no member 'word/document.xml'")


# -- text encodings --------------------------------------------------------------------------
def test_a_cp1252_txt_is_refused_with_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Price: 5 €, café".encode("cp1252"))
    _refused(path, "not valid UTF-8 at byte 9", "iconv")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_a_txt_with_a_byte_order_mark_is_read_and_says_its_encoding(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "marked.txt"
    path.write_text("Unicode text: café, 東京", encoding=encoding)
    documents, problems = _read(path)
    assert problems == [] and documents[0].text == "Unicode text: café, 東京"
    if encoding == "utf-8-sig":
        assert "encoding" not in documents[0].metadata
    else:
        assert documents[0].metadata["encoding"].startswith(encoding)


def test_an_undeclared_non_utf8_html_page_says_it_assumed_windows_1252(tmp_path: Path) -> None:
    path = tmp_path / "old.html"
    path.write_bytes("<p>Prix : 5 €, café</p>".encode("cp1252"))
    documents, _ = _read(path)
    assert documents[0].text == "Prix : 5 €, café"
    assert documents[0].metadata["encoding"].startswith("windows-1252 (assumed")


def test_a_declared_html_charset_is_used(tmp_path: Path) -> None:
    path = tmp_path / "koi.html"
    path.write_bytes('<meta charset="koi8-r"><p>Привет</p>'.encode("koi8-r"))
    documents, _ = _read(path)
    assert documents[0].text == "Привет" and "encoding" not in documents[0].metadata


# -- compressed ------------------------------------------------------------------------------
def test_a_gzip_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compressed, "MIN_LIMIT_BYTES", 1 << 20)
    path = tmp_path / "bomb.txt.gz"
    path.write_bytes(gzip.compress(b"a" * (32 << 20)))
    _refused(path, "decompression bomb")


def test_a_zstd_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zstandard

    monkeypatch.setattr(compressed, "MIN_LIMIT_BYTES", 1 << 20)
    path = tmp_path / "bomb.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=19).compress(b" " * (64 << 20)))
    _refused(path, "decompression bomb")


def test_a_file_named_gz_that_is_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_text('{"text": "not compressed"}\n')
    _refused(path, "corrupt or truncated gzip data")


def test_a_tar_gz_is_unsupported_not_invalid(tmp_path: Path) -> None:
    path = tmp_path / "backup.tar.gz"
    path.write_bytes(gzip.compress(b"\0" * 1024))
    documents, problems = _read(path)  # under "fail" too: an unsupported file is skipped and reported
    assert documents == [] and [problem.kind for problem in problems] == ["unsupported file type"]
    assert ".jsonl.gz" in problems[0].detail


def test_a_multi_member_gzip_and_multi_frame_zstd_are_read_whole(tmp_path: Path) -> None:
    import zstandard

    gz = tmp_path / "two.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"text": "one"}\n') + gzip.compress(b'{"text": "two"}\n'))
    zst = tmp_path / "two.jsonl.zst"
    compressor = zstandard.ZstdCompressor()
    zst.write_bytes(compressor.compress(b'{"text": "one"}\n') + compressor.compress(b'{"text": "two"}\n'))
    for path in (gz, zst):
        documents, problems = _read(path)
        assert problems == [] and [document.text for document in documents] == ["one", "two"]
        assert [document.id for document in documents] == [f"{path.name}:1", f"{path.name}:2"]


@pytest.mark.parametrize(
    ("page", "text"),
    [
        ("<a" * 100_000, ""),  # the standard library's html.parser: about 4 minutes here
        ("<!--" * 50_000, ""),  # html.parser: about 2 minutes
        ("</" * 100_000, ""),
        ("<![CDATA[" * 30_000, "<![CDATA[" * 29_999),
        ("<p>kept</p><a " + 'x="' * 50_000, "kept"),
    ],
)
def test_html_that_makes_parsers_quadratic_is_read_in_one_pass(tmp_path: Path, page: str, text: str) -> None:
    path = tmp_path / "hostile.html"
    path.write_text(page)
    documents, problems = _read(path, on_error="skip")
    assert [document.text for document in documents] == ([text] if text else [])
    # a page with no text at all: nothing extracted, an unreadable file (never an emptied document)
    assert [problem.kind for problem in problems] == ([] if text else ["unreadable file"])
