"""The ``e5`` command on the default embedded store (Chroma in ./.e5-store), with the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from e5_integrations.cli import DEFAULT_COLLECTION, main
from e5_integrations.ingest import DEFAULT_RETRY_SECONDS, open_sink
from tests.stores._chroma_server import free_port

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
    assert main(["ingest", "docs", "--model", model, "--no-progress", "--id-root", "docs"]) == 0
    out = capsys.readouterr().out
    assert "read 3 documents -> 3 chunks" in out and "written 3" in out
    assert (workdir / ".e5-store" / "chroma").is_dir()

    assert main(["ingest", "docs", "--model", model, "--no-progress", "--json", "--id-root", "docs"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["embedded"], report["written"], report["skipped"]) == (
        0,
        0,
        {"unchanged chunks": 3, "unchanged files (not parsed)": 3},
    )

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
    assert main(["ingest", "docs", "--model", model, "--no-progress", "--id-root", "docs"]) == 0
    (workdir / "docs" / "keys.txt").unlink()
    argv = ["ingest", "docs", "--model", model, "--no-progress", "--prune", "--json", "--id-root", "docs"]
    assert main(argv) == 0
    capsys.readouterr()
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 2
        assert sink.fetch_hashes(["keys.txt#0", "intro.md#0"]).keys() == {"intro.md#0"}


def test_every_spelling_of_a_path_addresses_the_same_rows(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11.1: docs/a.txt, /abs/docs/a.txt and docs once stored the same text three times."""
    model = str(tiny_model_dir)
    store = str(workdir / ".e5-store" / "chroma")
    keys = os.path.realpath(workdir / "docs" / "keys.txt")
    for source in ["docs/keys.txt", str(workdir / "docs" / "keys.txt"), "docs", "./docs/faq/../keys.txt"]:
        assert main(["ingest", source, "--model", model, "--no-progress", "--uri", store]) == 0
    (workdir / "elsewhere").mkdir()
    monkeypatch.chdir(workdir / "elsewhere")
    assert main(["ingest", "../docs", "--model", model, "--no-progress", "--uri", store, "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    # the files were sealed by the runs before: not parsed at all
    assert (report["embedded"], report["skipped"]) == (
        0,
        {"unchanged chunks": 3, "unchanged files (not parsed)": 3},
    )
    with open_sink("chroma", store, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 3
        assert list(sink.fetch_hashes([f"{keys}#0"])) == [f"{keys}#0"]


def test_two_folders_with_a_readme_each(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11.1: `e5 ingest a b` failed on a duplicate id when both held a README.md."""
    for folder in ("a", "b"):
        (workdir / folder).mkdir()
        (workdir / folder / "README.md").write_text(f"The readme of folder {folder}.", encoding="utf-8")
    assert main(["ingest", "a", "b", "--model", str(tiny_model_dir), "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["documents"], report["written"]) == (2, 2)
    assert main(["ingest", "a", "b", "--model", str(tiny_model_dir), "--id-root", "a"]) == 2
    err = capsys.readouterr().err
    assert "outside --id-root" in err and "README.md" in err and "Traceback" not in err


def test_malformed_input_exits_2_naming_the_line_and_writes_nothing(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "docs" / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    assert main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "--on-error skip" in err and "on_error=" not in err
    assert "Traceback" not in err
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 0

    assert (
        main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress", "--on-error", "skip"]) == 0
    )
    out = capsys.readouterr().out
    assert "written 4" in out and "1 invalid records" in out and "bad.jsonl:2: invalid record" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "nowhere"], "does not exist"),
        (["ingest", "docs", "--api-key", "k"], "--api-key is a Qdrant option"),
        (["ingest", "docs", "--chunk-tokens", "8", "--chunk-overlap", "8"], "--chunk-overlap 8; expected"),
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


def test_bad_flag_values_are_rejected_by_the_parser(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
    ingest = subprocess.run(
        [*command, "ingest", "docs", "--no-progress"], env=env, capture_output=True, text=True, timeout=300
    )
    assert ingest.returncode == 0, ingest.stderr
    search = subprocess.run(
        [*command, "search", "API key", "--json", "-k", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert search.returncode == 0, search.stderr
    assert len([json.loads(line) for line in search.stdout.splitlines()]) == 3


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make loading the model weights fail loudly (a 7B model takes minutes to load), and
    record every attempt: what these tests check must be reported before any load."""
    import e5_integrations._encoder as encoder_module

    attempts: list[str] = []

    def refuse(self: Any, model: Any = None, **options: Any) -> None:
        attempts.append(str(model))
        raise AssertionError(f"the model {model!r} was loaded before the problem was reported")

    monkeypatch.setattr(encoder_module.E5Encoder, "__init__", refuse)
    return attempts


def test_bad_input_is_reported_before_the_model_loads(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], no_model_load: list[str]
) -> None:
    (workdir / "docs" / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    assert main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress"]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert no_model_load == []


def test_a_model_path_that_does_not_exist_is_reported_after_the_input(
    workdir: Path, capsys: pytest.CaptureFixture[str], no_model_load: list[str]
) -> None:
    (workdir / "docs" / "bad.jsonl").write_text("not json\n", encoding="utf-8")
    assert main(["ingest", "docs", "--model", str(workdir / "no-such-model"), "--no-progress"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chunk-tokens", "8", "--chunk-overlap", "8"], "--chunk-overlap 8"),
        (["--dtype", "int4"], "dtype 'int4' is not supported"),
        (["--batch-tokens", "1", "--device", "tpu:x"], "not a torch device"),
    ],
)
def test_bad_flags_are_reported_before_the_model_loads(
    workdir: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: list[str],
    argv: list[str],
    message: str,
) -> None:
    assert main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err
    assert no_model_load == []


def test_a_collection_of_another_dimension_is_reported_before_the_model_loads(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], no_model_load: list[str]
) -> None:
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        sink.ensure_collection(3)  # the tiny model's vectors have 64 dimensions
    assert main(["ingest", "docs", "--model", str(tiny_model_dir), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "64" in err and "3" in err and "Traceback" not in err
    assert "another --collection name" in err and "collection=" not in err  # a hint with the CLI's flag
    assert no_model_load == []


def test_search_of_a_missing_collection_is_reported_before_the_model_loads(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], no_model_load: list[str]
) -> None:
    assert main(["search", "q", "--model", str(tiny_model_dir), "--collection", "never_ingested"]) == 2
    assert "run `e5 ingest" in capsys.readouterr().err
    assert no_model_load == []


def test_nothing_to_ingest_exits_2_and_says_what_was_found(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = workdir / "empty"
    empty.mkdir()
    assert main(["ingest", "empty", "--model", str(tiny_model_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing to ingest" in err and "no files" in err and ".txt" in err and ".parquet" in err

    other = workdir / "other"
    other.mkdir()
    (other / "a.key").write_bytes(
        b"PK"
    )  # Keynote and OpenDocument: not read (.pdf, .docx are, since issue 20)
    (other / "b.odt").write_bytes(b"PK")
    (other / "c.key").write_bytes(b"PK")
    assert main(["ingest", "other", "--model", str(tiny_model_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing to ingest" in err
    assert "3 files of unsupported types (.key x2, .odt x1)" in err and ".jsonl" in err
    with open_sink(None, None, DEFAULT_COLLECTION) as sink:
        assert sink.count() == 0

    # An empty file is a document with zero chunks, not nothing: a run over it deletes the
    # chunks it had when it had text (issue 11 item 4), so it is real work and exits 0.
    (other / "blank.txt").write_text("   \n", encoding="utf-8")
    assert main(["ingest", "other", "--model", str(tiny_model_dir), "--no-progress"]) == 0
    assert "1 empty documents" in capsys.readouterr().out


def test_search_infers_the_store_from_what_is_at_the_uri_and_never_writes(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(tiny_model_dir)
    qdrant = workdir / "qdrant-store"
    assert (
        main(
            ["ingest", "docs", "--model", model, "--no-progress", "--id-root", "docs"]
            + ["--store", "qdrant", "--uri", str(qdrant)]
        )
        == 0
    )
    before = sorted(path.relative_to(qdrant) for path in qdrant.rglob("*"))
    capsys.readouterr()

    assert main(["search", "rotate a key", "--model", model, "--uri", str(qdrant), "-k", "3", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {hit["id"] for hit in hits} == {f"{name}#0" for name in DOCS}  # the random model ranks at random
    assert not (qdrant / "chroma.sqlite3").exists()
    assert sorted(path.relative_to(qdrant) for path in qdrant.rglob("*")) == before

    assert main(["ingest", "docs", "--model", model, "--no-progress", "--uri", str(workdir / "k.db")]) == 0
    capsys.readouterr()
    assert main(["search", "rotate a key", "--model", model, "--uri", str(workdir / "k.db"), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}#0" in out for name in DOCS)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "nothing at"),
        ("empty-dir", "--store chroma"),
        ("file", "--store"),
    ],
)
def test_search_with_a_uri_that_holds_no_store_is_an_error_and_creates_nothing(
    workdir: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    no_model_load: list[str],
    make: str | None,
    message: str,
) -> None:
    target = workdir / "target"
    if make == "empty-dir":
        target.mkdir()
    elif make == "file":
        target.write_text("not a store", encoding="utf-8")
    assert main(["search", "q", "--model", str(tiny_model_dir), "--uri", str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if make is None:
        assert not target.exists()
    elif make == "empty-dir":
        assert list(target.iterdir()) == []
    assert not (workdir / ".e5-store").exists()


def test_search_with_no_store_anywhere_creates_nothing(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], no_model_load: list[str]
) -> None:
    assert main(["search", "q", "--model", str(tiny_model_dir)]) == 2
    assert "run `e5 ingest" in capsys.readouterr().err
    assert not (workdir / ".e5-store").exists()


SECRET = "s3cret-Pa55"


@pytest.mark.parametrize("store", ["chroma", "milvus"])
def test_credentials_in_the_uri_are_never_printed(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], store: str
) -> None:
    uri = f"http://admin:{SECRET}@127.0.0.1:{free_port()}"
    argv = ["ingest", "docs", "--store", store, "--uri", uri, "--model", str(tiny_model_dir)]
    assert main([*argv, "--retry-seconds", "1", "-vv", "--json", "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "admin:***@127.0.0.1" in err and "--retry-seconds" in err
    assert "Traceback" not in err


def test_retry_seconds_flag_is_documented_and_checked(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", "--help"])
    assert info.value.code == 0
    assert f"default: {DEFAULT_RETRY_SECONDS:g}" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["ingest", "docs", "--retry-seconds", "-1"])
    assert ">= 0" in capsys.readouterr().err


def test_search_with_a_model_of_another_dimension_says_which(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.stores._common import records

    with open_sink(None, None, DEFAULT_COLLECTION) as sink:  # ingested with a 16-dim model
        sink.ensure_collection(16)
        sink.upsert(records(2, dim=16))
    assert main(["search", "limits", "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "16-dimensional" in err and "--model" in err and str(tiny_model_dir) in err
    assert "Traceback" not in err


def test_recipe_flag_re_embeds_and_searches_with_that_recipe(
    workdir: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = str(tiny_model_dir)
    assert main(["ingest", "docs", "--model", model, "--no-progress", "--json", "--id-root", "docs"]) == 0
    assert json.loads(capsys.readouterr().out)["embedded"] == 3
    args = ["--model", model, "--recipe", "sgpt-nobrackets", "--id-root", "docs"]
    assert main(["ingest", "docs", *args, "--no-progress", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["embedded"], report["written"]) == (3, 3)  # a new recipe re-embeds every chunk
    assert main(["search", DOCS["keys.txt"], *args[:4], "--json", "-k", "1"]) == 0
    hit = json.loads(capsys.readouterr().out.splitlines()[0])
    assert hit["id"] == "keys.txt#0" and hit["score"] > 0.999  # sgpt's symmetric query = the document


def test_unknown_recipe_exits_2_listing_the_valid_ones(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["ingest", "docs", "--recipe", "bert", "--model", "/nonexistent"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'bert'" in err and "qwen3-embedding" in err and "Traceback" not in err
