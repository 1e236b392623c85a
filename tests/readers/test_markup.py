"""HTML, EPUB and notebooks on details the contract suite does not reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest._readers import Document, SourceFile
from e5_integrations.ingest._sources import SourceProblem, read_source_file
from tests.readers.samples import epub_bytes, notebook


def _read(path: Path) -> tuple[list[Document], list[SourceProblem]]:
    problems: list[SourceProblem] = []
    documents = list(
        read_source_file(SourceFile(path, path.name), on_error="skip", on_problem=problems.append)
    )
    return documents, problems


def _text(path: Path) -> str:
    documents, problems = _read(path)
    assert problems == [] and len(documents) == 1
    return documents[0].text


# -- HTML ------------------------------------------------------------------------------------
def test_html_boilerplate_is_dropped_and_unclosed_tags_are_closed(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text(
        "<title>T</title><script>SCRIPTJUNK</script><style>STYLEJUNK</style>"
        '<div role="navigation">MENUJUNK</div><p hidden>HIDDENJUNK</p><noscript>NOSCRIPTJUNK</noscript>'
        "<p>First paragraph<p>Second <br> line<ul><li>one<li>two</ul><table><tr><td>a<td>b<tr><td>c"
    )
    text = _text(path)
    assert "JUNK" not in text
    assert text == "First paragraph\n\nSecond\nline\n\n- one\n- two\n\n| a | b |\n| --- | --- |\n| c |  |"


def test_html_a_list_item_with_two_paragraphs_stays_one_item(tmp_path: Path) -> None:
    path = tmp_path / "items.html"
    path.write_text("<ol><li><p>Step one</p><p>More on step one</p></li><li>Step two</li></ol><p>After</p>")
    assert _text(path) == "1. Step one\n   More on step one\n2. Step two\n\nAfter"


def test_html_a_utf16_page_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "wide.html"
    path.write_bytes("<h1>Überschrift</h1><p>Text</p>".encode("utf-16"))
    documents, _ = _read(path)
    assert documents[0].text == "# Überschrift\n\nText" and documents[0].metadata == {"title": "Überschrift"}


def test_html_an_unknown_declared_charset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.html"
    path.write_bytes(b'<meta charset="x-klingon"><p>x</p>')
    with pytest.raises(SourceError, match="declares the charset 'x-klingon'"):
        list(read_source_file(SourceFile(path, path.name)))


def test_an_html_page_with_only_markup_is_reported_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.html"
    path.write_text("<html><head><script>x()</script></head><body><img src=a.png></body></html>")
    documents, problems = _read(path)
    # nothing extracted from a whole-file format: unreadable, so its stored chunks stay
    assert documents == [] and [problem.kind for problem in problems] == ["unreadable file"]


# -- EPUB ------------------------------------------------------------------------------------
def test_epub_chapters_follow_the_spine_and_sections_span_chapters(tmp_path: Path) -> None:
    path = tmp_path / "book.epub"
    chapters = [(f"c{n}.xhtml", f"<h2>Chapter {n}</h2><p>Body of chapter {n}.</p>") for n in range(1, 4)]
    path.write_bytes(epub_bytes(chapters, title="Three chapters"))
    documents, _ = _read(path)
    (book,) = documents
    assert book.text.index("Chapter 1") < book.text.index("Chapter 2") < book.text.index("Chapter 3")
    assert [dict(span.metadata) for span in book.spans] == [{"section": f"Chapter {n}"} for n in range(1, 4)]
    assert book.metadata == {"title": "Three chapters"}


def test_epub_without_a_container_is_named(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "not-a-book.epub"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/epub+zip")
    with pytest.raises(SourceError, match="no META-INF/container.xml"):
        list(read_source_file(SourceFile(path, path.name)))


# -- IPYNB -----------------------------------------------------------------------------------
def test_an_unexecuted_notebook_is_read_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "fresh.ipynb"
    path.write_text(
        notebook(
            [
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": {},
                    "outputs": [],
                    "source": "x = 1",
                },
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": {},
                    "outputs": [],
                    "source": ["y = x + 1"],
                },
            ]
        )
    )
    assert _text(path) == "```python\nx = 1\n```\n\n```python\ny = x + 1\n```"


def test_a_notebook_error_output_and_a_fence_inside_markdown(tmp_path: Path) -> None:
    path = tmp_path / "fails.ipynb"
    path.write_text(
        notebook(
            [
                {"cell_type": "markdown", "metadata": {}, "source": "```\n# not a heading\n```"},
                {
                    "cell_type": "code",
                    "execution_count": 1,
                    "metadata": {},
                    "outputs": [
                        {
                            "output_type": "error",
                            "ename": "ZeroDivisionError",
                            "evalue": "division by zero",
                            "traceback": [],
                        }
                    ],
                    "source": "1/0",
                },
            ]
        )
    )
    documents, _ = _read(path)
    assert documents[0].spans == ()  # the "# not a heading" line sits in a fence
    assert "ZeroDivisionError: division by zero" in documents[0].text


def test_an_nbformat_3_notebook_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "worksheets": [{"cells": []}]}))
    with pytest.raises(SourceError, match="not an nbformat 4 notebook .*jupyter nbconvert"):
        list(read_source_file(SourceFile(path, path.name)))


def test_a_notebook_without_cells_is_reported_empty(tmp_path: Path) -> None:
    path = tmp_path / "none.ipynb"
    path.write_text(notebook([]))
    documents, problems = _read(path)
    # nothing extracted from a whole-file format: unreadable, so its stored chunks stay
    assert documents == [] and [problem.kind for problem in problems] == ["unreadable file"]


def test_an_epub_chapter_declaring_entities_leaves_them_unexpanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    chapter = (
        f'<!DOCTYPE html [<!ENTITY secret SYSTEM "file://{secret}"><!ENTITY lol "lol">]>'
        "<html><body><h1>Chapter</h1><p>&secret; &lol; text &amp; more</p></body></html>"
    )
    path = tmp_path / "entities.epub"
    path.write_bytes(epub_bytes([("c.xhtml", chapter)]))
    text = _text(path)
    assert text == "# Chapter\n\n&secret; &lol; text & more"
