"""kill -9 in the middle of ``e5 ingest``, run it again: exactly the expected rows, none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from e5_integrations.cli import main
from e5_integrations.ingest import open_sink
from tests.stores._pg_server import pg_dsn  # noqa: F401  (fixture, started only for pgvector)

pytestmark = pytest.mark.integration

N_DOCS = 400


def _corpus(root: Path) -> list[str]:
    root.mkdir()
    ids = []
    for i in range(N_DOCS):
        name = f"doc{i:04d}.txt"
        (root / name).write_text(
            f"Document {i} is about topic {i % 17} and mentions item {i * 7}.", encoding="utf-8"
        )
        ids.append(f"{name}#0")
    return ids


def _command(tiny_model_dir: Path, store_args: list[str]) -> list[str]:
    # tiny forward passes and small groups: hundreds of background writes, so a kill lands mid-run
    return [
        sys.executable,
        "-m",
        "e5_integrations.cli",
        "ingest",
        "corpus",
        *store_args,
        "--model",
        str(tiny_model_dir),
        "--batch-tokens",
        "64",
        "--id-root",
        "corpus",
        "--no-progress",
        "--json",
        "-v",
    ]


def _kill_after_first_write(command: list[str], cwd: Path) -> None:
    """Start ``command``; SIGKILL it as soon as it logs its first acknowledged write."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stderr is not None
        deadline = time.monotonic() + 240
        seen = []
        try:
            for line in process.stderr:
                seen.append(line)
                if "upserted" in line:
                    os.kill(process.pid, signal.SIGKILL)
                    break
                assert time.monotonic() < deadline, "no write within 240 s"
            else:
                pytest.fail("the run ended before any write was logged:\n" + "".join(seen[-20:]))
        finally:
            process.kill()
            process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


CASES = [
    *(
        (target, layout)
        for target in ("chroma", "milvus", "qdrant")
        for layout in ("e5", "langchain", "llama-index")
    ),
    *(("pgvector", layout) for layout in ("e5", "langchain", "langchain-legacy", "llama-index")),
]


@pytest.mark.parametrize(("target", "layout"), CASES, ids=[f"{t}-{layout}" for t, layout in CASES])
def test_kill_9_then_rerun_leaves_exactly_the_expected_rows(
    tmp_path: Path,
    tiny_model_dir: Path,
    target: str,
    layout: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    expected = _corpus(tmp_path / "corpus")
    uri = {
        "chroma": lambda: str(tmp_path / ".e5-store" / "chroma"),
        "milvus": lambda: str(tmp_path / "milvus.db"),
        "qdrant": lambda: str(tmp_path / "qdrant"),
        "pgvector": lambda: request.getfixturevalue("pg_dsn"),  # one database: a collection per layout
    }[target]()
    collection = f"crash_{layout.replace('-', '_')}" if target == "pgvector" else "crash"
    store_args = [] if target == "chroma" else ["--store", target, "--uri", uri]
    if target == "pgvector":
        request.addfinalizer(lambda: _drop(uri, collection, layout))
    command = _command(tiny_model_dir, [*store_args, "--collection", collection])

    _kill_after_first_write([*command, "--layout", layout], tmp_path)
    # the rerun finds the layout in what the killed run wrote

    rerun = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = json.loads(rerun.stdout)
    # the killed run had stored some rows, not all; the rerun embedded only the rest
    assert 0 < report["skipped_unchanged"] < N_DOCS
    assert report["embedded"] == N_DOCS - report["skipped_unchanged"]
    assert report["chunks"] == N_DOCS
    assert report["layout"] == layout

    # every document is now marked done: a third run (before this process opens the store: Milvus Lite
    # locks its file) tokenizes none of them
    third = _run_to_end(command, tmp_path)
    assert (third["skipped_documents"], third["embedded"], third["written"]) == (N_DOCS, 0, 0)

    # a fresh process-like open of the store serves `e5 search`
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "search",
                "topic 3",
                *store_args,
                "--collection",
                collection,
                "--model",
                str(tiny_model_dir),
                "--json",
                "-k",
                "3",
            ]
        )
        == 0
    ), capsys.readouterr().err
    assert len(capsys.readouterr().out.splitlines()) == 3

    with open_sink(target, uri, collection) as sink:
        assert sink.layout.name == layout
        assert sink.count() == N_DOCS
        assert set(sink.fetch_hashes(expected)) == set(expected)


def _run_to_end(command: list[str], cwd: Path) -> dict[str, object]:
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _long_text(i: int, word: str) -> str:
    return " ".join(f"Document {i} sentence {n} has one more {word} about topic {i % 17}." for n in range(6))


@pytest.mark.parametrize("target", ["chroma", "pgvector"])
def test_kill_9_while_rewriting_changed_documents_leaves_no_mark_over_half_written_ones(
    tmp_path: Path, tiny_model_dir: Path, target: str, request: pytest.FixtureRequest
) -> None:
    """v1 stored; every document changes to v2 (several chunks each) and the run is killed
    after its first write; the sources go back to v1. The re-run must rewrite what v2 touched
    (no v1 mark trusted over v2 chunks) and end with exactly v1's rows."""
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(N_DOCS // 4):
        (root / f"doc{i:04d}.txt").write_text(_long_text(i, "detail"), encoding="utf-8")
    uri = str(tmp_path / ".e5-store" / "chroma") if target == "chroma" else request.getfixturevalue("pg_dsn")
    collection = f"crash_rewrite_{uuid.uuid4().hex[:8]}"
    store_args = [] if target == "chroma" else ["--store", target, "--uri", uri]
    command = [*_command(tiny_model_dir, [*store_args, "--collection", collection]), "--chunk-tokens", "16"]
    if target == "pgvector":
        request.addfinalizer(lambda: _drop(uri, collection, "e5"))

    first = _run_to_end(command, tmp_path)
    with open_sink(target, uri, collection) as sink:
        ids = [f"doc{i:04d}.txt#{n}" for i in range(N_DOCS // 4) for n in range(64)]
        v1 = sink.fetch_hashes(ids)
    assert len(v1) == first["chunks"] and len(v1) > N_DOCS // 2

    for i in range(N_DOCS // 4):
        (root / f"doc{i:04d}.txt").write_text(_long_text(i, "fact"), encoding="utf-8")
    _kill_after_first_write(command, tmp_path)
    for i in range(N_DOCS // 4):
        (root / f"doc{i:04d}.txt").write_text(_long_text(i, "detail"), encoding="utf-8")

    rerun = _run_to_end(command, tmp_path)
    assert rerun["chunks"] == len(v1)
    with open_sink(target, uri, collection) as sink:
        assert sink.fetch_hashes(ids) == v1
        assert sink.count() == len(v1)
    last = _run_to_end(command, tmp_path)
    assert (last["skipped_documents"], last["embedded"]) == (N_DOCS // 4, 0)


def _drop(uri: str, collection: str, layout: str) -> None:
    with open_sink("pgvector", uri, collection, layout=layout) as sink:
        sink.drop()
