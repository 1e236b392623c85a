"""PDFs on the Ray engine: the local engine's rows (page metadata included), an unreadable
file reported (or failing the run) without losing its stored chunks, a scanned page reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e5_integrations import SourceError
from e5_integrations.ingest import Chunker, iter_documents
from e5_integrations.ingest._pipeline import prepare_chunks
from tests.ray.conftest import content_only as _content
from tests.ray.conftest import dump_rows
from tests.ray.test_ray_engine import _Chunking
from tests.readers.pdfs import rasterize_pdf, write_pdf

pytestmark = pytest.mark.integration
pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")

CHUNK: _Chunking = {"chunk_tokens": 32, "chunk_overlap": 8}


def _page(number: int) -> list[str]:
    return [f"Page {number} line {line}: the pump valve {number} needs a check." for line in range(6)]


def _expected(encoder: Any, corpus: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    chunker = Chunker(encoder.tokenizer, **{"chunk_tokens": 32, "overlap": 8}, max_length=encoder.max_length)
    rows = {}
    for document in iter_documents([corpus], id_root=corpus, on_error="skip"):
        for chunk in prepare_chunks(document, chunker, encoder.model_name, encoder.max_length):
            rows[chunk.id] = (chunk.text, chunk.metadata)
    return rows


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
def test_pdfs_on_ray_rows_pages_and_an_unreadable_file_that_keeps_its_chunks(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    from e5_integrations.ray import ingest_ray

    def run(**options: Any) -> Any:
        store, uri, collection = store_target
        return ingest_ray(
            [corpus], store=store, uri=uri, collection=collection, model=str(tiny_model_dir), dtype="fp32",
            id_root=corpus, **CHUNK, **options,
        )  # fmt: skip

    corpus = tmp_path / "docs"
    corpus.mkdir()
    manual = write_pdf(corpus / "manual.pdf", [_page(1), _page(2), _page(3)], title="Pump manual")
    rasterize_pdf(
        write_pdf(tmp_path / "o.pdf", [_page(7), _page(8)]), corpus / "scan.pdf", keep_text_pages=[2], dpi=72
    )
    (corpus / "note.txt").write_text("A plain note about the pump.", encoding="utf-8")
    expected = _expected(encoder, corpus)

    report = run(on_error="skip")
    rows = dump_rows(*store_target)
    # Ray marks a one-chunk document's chunk 0: compare the content hashes
    assert {id_: (text, _content(meta)) for id_, (text, meta, _) in rows.items()} == expected
    pages = {(meta["document_id"], meta.get("page"), meta.get("page_end")) for _, meta, _ in rows.values()}
    assert {(document, page) for document, page, _ in pages} == {
        ("manual.pdf", 1), ("manual.pdf", 2), ("manual.pdf", 3), ("scan.pdf", 2), ("note.txt", None)
    }  # fmt: skip
    assert (report.documents, report.unread_parts, report.skipped_unreadable) == (3, 1, 0)
    assert [problem.location for problem in report.problems] == [f"{corpus / 'scan.pdf'} (page 1)"]

    manual.write_bytes(manual.read_bytes()[:400])
    with pytest.raises(SourceError, match=r"manual\.pdf: not a readable PDF"):
        run(on_error="fail")
    broken = run(on_error="skip", prune=True)
    assert (broken.skipped_unreadable, broken.documents, broken.pruned) == (1, 2, 0)
    assert any(str(problem).startswith(f"{manual}: unreadable file") for problem in broken.problems)
    assert set(dump_rows(*store_target)) == set(expected)  # the manual's chunks are all still there
