"""``e5 ingest`` (local engine, default embedded store) on a folder of mixed document formats,
good and bad: under ``--on-error skip`` the bad files are reported by name and the good ones
stored with their structure metadata; under ``fail`` the run stops naming the first bad file
and writes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from e5_integrations.cli import DEFAULT_COLLECTION, main
from e5_integrations.ingest import open_sink
from tests.readers.samples import SAMPLES, docx_bytes

pytestmark = pytest.mark.integration

GOOD = [".docx", ".pptx", ".xlsx", ".html", ".epub", ".ipynb", ".jsonl.gz", ".txt.zst"]


def _bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(docx_bytes())) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "word/document.xml":
                data = data.replace(b"</w:body>", b" " * (32 << 20) + b"</w:body>")
            target.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


@pytest.fixture
def docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for extension in GOOD:
        SAMPLES[extension](folder)
    (folder / "bad").mkdir()
    (folder / "bad" / "notes.docx").write_text("plain text wearing a .docx extension")
    (folder / "bad" / "empty.pptx").touch()
    (folder / "bad" / "bomb.docx").write_bytes(_bomb())
    (folder / "bad" / "legacy.txt").write_bytes("caf\u00e9".encode("cp1252"))
    monkeypatch.chdir(tmp_path)
    return folder


def test_mixed_formats_skip_reports_bad_files_and_stores_the_good(
    docs: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress", "--id-root", "docs"]
    assert main(argv) == 2  # --on-error fail: the first bad file stops the run, nothing written
    err = capsys.readouterr().err
    # the check pass reads the record and text files (whole-file formats are parsed once, later)
    assert "docs/bad/legacy.txt" in err and "not valid UTF-8" in err and "Traceback" not in err
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 0

    assert main([*argv, "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "1 invalid records" in out and "3 unreadable files" in out, out
    for name, why in [
        ("bad/notes.docx", "looks like plain text"),
        ("bad/empty.pptx", "the file is empty (0 bytes)"),
        ("bad/bomb.docx", "zip bomb"),
        ("bad/legacy.txt", "not valid UTF-8 at byte 3"),
    ]:
        line = next(line for line in out.splitlines() if name in line)
        assert why in line, line
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        documents = {document for page in sink.scan() for _, document in page}
    assert documents == {
        "policy.docx",
        "review.pptx",
        "budget.xlsx",
        "billing.html",
        "handbook.epub",
        "analysis.ipynb",
        "q1",  # faq.jsonl.gz: records with ids
        "q2",
        "notes.txt.zst",
    }

    assert main(["search", "hotel limits", "--model", str(tiny_model_dir), "--json", "-k", "100"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_source: dict[str, list[dict[str, object]]] = {}
    for hit in hits:
        by_source.setdefault(hit["metadata"]["source"], []).append(hit["metadata"])
    assert by_source["policy.docx"][0]["title"] == "Travel policy"
    assert by_source["budget.xlsx"][0]["title"] == "Trip budget"
    assert by_source["handbook.epub"][0]["title"] == "A Small Handbook"
