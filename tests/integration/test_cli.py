"""The ``e5`` command on the default embedded store (Chroma in ./.e5-store), with the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e5_integrations.cli import DEFAULT_COLLECTION, main
from e5_integrations.ingest import open_sink

pytestmark = pytest.mark.integration

DOCS = {
    "intro.md": "# Intro\n\nThe e5 command embeds documents and stores them for retrieval.",
    "keys.txt": "Rotate an API key by creating a new key and revoking the old one.",
    "faq/limits.txt": "Each account may send one thousand requests per minute.",
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with ./docs, so the default store lands in tmp_path."""
    for name, text in DOCS.items():
        path = tmp_path / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_ingest_then_search_with_no_server(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = str(tiny_model_dir)
    assert main(["ingest", "docs", "--model", model, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "read 3 documents -> 3 chunks" in out and "written 3" in out
    assert (workdir / ".e5-store" / "chroma").is_dir()

    assert main(["ingest", "docs", "--model", model, "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["embedded"], report["written"], report["skipped"]) == (0, 0, {"unchanged chunks": 3})

    monkeypatch.setenv("E5_MODEL", model)  # --model defaults to $E5_MODEL
    assert main(["search", "how do I rotate a key?", "--json", "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hits = [json.loads(line) for line in lines]
    assert len(hits) == 2
    for hit in hits:
        assert set(hit) == {"id", "score", "text", "metadata"}
        doc_id = hit["id"].split("#")[0]
        assert hit["text"] == DOCS[doc_id]
        assert hit["metadata"]["source"] == doc_id
    assert hits[0]["score"] >= hits[1]["score"]

    assert main(["search", "limits", "-k", "1"]) == 0
    assert "#0" in capsys.readouterr().out


def test_prune_flag_removes_a_deleted_file(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(tiny_model_dir)
    assert main(["ingest", "docs", "--model", model, "--no-progress"]) == 0
    (workdir / "docs" / "keys.txt").unlink()
    assert main(["ingest", "docs", "--model", model, "--no-progress", "--prune", "--json"]) == 0
    capsys.readouterr()
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 2
        assert sink.fetch_hashes(["keys.txt#0", "intro.md#0"]).keys() == {"intro.md#0"}


def test_malformed_input_exits_2_naming_the_line_and_writes_nothing(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "docs" / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    assert main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "--on-error skip" in err
    assert "Traceback" not in err
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 0

    assert main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress", "--on-error", "skip"]) == 0
    out = capsys.readouterr().out
    assert "written 4" in out and "1 invalid records" in out and "bad.jsonl:2: invalid record" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "nowhere"], "does not exist"),
        (["ingest", "docs", "--api-key", "k"], "--api-key is a Qdrant option"),
        (["ingest", "docs", "--chunk-tokens", "8", "--chunk-overlap", "8"], "chunk_overlap=8"),
        (["ingest", "docs", "--store", "pgvector"], "--store pgvector needs --uri"),
        (["search", "anything", "--collection", "never_ingested"], "run `e5 ingest"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([*argv, "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_flag_values_are_rejected_by_the_parser(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", "docs", "--store", "elastic"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["search", "q", "-k", "0"])
    assert "positive integer" in capsys.readouterr().err


def test_console_script_runs_as_a_subprocess(workdir: Path, tiny_model_dir: Path) -> None:
    script = Path(sys.executable).with_name("e5")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "e5_integrations.cli"]
    env = {**os.environ, "E5_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1"}
    ingest = subprocess.run([*command, "ingest", "docs", "--no-progress"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    search = subprocess.run([*command, "search", "API key", "--json", "-k", "3"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert search.returncode == 0, search.stderr
    assert len([json.loads(line) for line in search.stdout.splitlines()]) == 3


def test_recipe_flag_re_embeds_and_searches_with_that_recipe(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(tiny_model_dir)
    assert main(["ingest", "docs", "--model", model, "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["embedded"] == 3
    args = ["--model", model, "--recipe", "sgpt-nobrackets"]
    assert main(["ingest", "docs", *args, "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["embedded"], report["written"]) == (3, 3)  # a new recipe re-embeds every chunk
    assert main(["search", DOCS["keys.txt"], *args, "--json", "-k", "1"]) == 0
    hit = json.loads(capsys.readouterr().out.splitlines()[0])
    assert hit["id"] == "keys.txt#0" and hit["score"] > 0.999  # sgpt's symmetric query = the document


def test_unknown_recipe_exits_2_listing_the_valid_ones(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", "docs", "--recipe", "bert", "--model", "/nonexistent"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'bert'" in err and "qwen3-embedding" in err and "Traceback" not in err
