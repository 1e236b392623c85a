"""The Ray Data engine on Ray local mode (2 CPUs) with the tiny model, into real stores.

Proves what issue 7 asks: exact counts in a real Postgres+pgvector and a real Chroma
server, the same rows (ids, texts, metadata, vectors) as the local engine, exactness after
an embedding actor is killed mid-run, and the local engine's resume semantics.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest

from e5_integrations import ConfigurationError, SourceError
from e5_integrations.ingest import Chunker, ingest, iter_documents, open_sink
from e5_integrations.ingest._fingerprint import parse_stored_hash
from e5_integrations.ingest._pipeline import prepare_chunks
from tests.ray.conftest import dump_rows, write_corpus

pytestmark = pytest.mark.integration


class _Chunking(TypedDict):
    chunk_tokens: int
    chunk_overlap: int


CHUNK: _Chunking = {"chunk_tokens": 48, "chunk_overlap": 8}


def expected_rows(encoder: Any, corpus: Path, **options: Any) -> dict[str, str]:
    """``{chunk id: text}`` the corpus must end up as, computed without any engine
    (``options`` go to ``iter_documents``)."""
    chunker = Chunker(
        encoder.tokenizer, CHUNK["chunk_tokens"], CHUNK["chunk_overlap"], max_length=encoder.max_length
    )
    rows = {}
    for document in iter_documents([corpus], **options):
        for chunk in prepare_chunks(document, chunker, encoder.model_name, encoder.max_length):
            rows[chunk.id] = chunk.text
    return rows


def run_ray(target: tuple[str, str, str], corpus: Path, model: Path, **options: Any) -> Any:
    from e5_integrations.ray import ingest_ray

    store, uri, collection = target
    return ingest_ray(
        [corpus],
        store=store,
        uri=uri,
        collection=collection,
        model=str(model),
        dtype="fp32",
        **CHUNK,
        **options,
    )


@pytest.mark.parametrize("store_target", ["pgvector", "chroma"], indirect=True)
def test_exact_rows_then_idempotent_rerun_then_shrink(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "docs", documents=120)
    expected = expected_rows(encoder, corpus)
    assert len(expected) > 125, "the corpus must split some documents into several chunks"

    report = run_ray(store_target, corpus, tiny_model_dir, embed_batch_rows=32)
    rows = dump_rows(*store_target)
    assert {id_: text for id_, (text, _, _) in rows.items()} == expected
    assert report.documents == 122
    assert (report.chunks, report.embedded, report.written) == (len(expected),) * 3
    assert report.skipped_unchanged == 0 and report.deleted_stale == 0
    assert report.tokens_embedded > 0
    norms = np.linalg.norm(np.stack([vector for _, _, vector in rows.values()]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)

    again = run_ray(store_target, corpus, tiny_model_dir)
    assert (again.chunks, again.skipped_unchanged, again.embedded, again.written) == (
        len(expected),
        len(expected),
        0,
        0,
    )
    # the first run sealed every file it read whole: none is read again
    assert (again.files_unchanged, again.skipped_documents) == (3, 122)
    with open_sink(*store_target) as sink:
        assert sink.count() == len(expected)

    # an edited file is read again: its documents of one chunk carry their mark (written with
    # their only chunk) and are skipped untokenized, except its first, whose chunk 0 carried
    # the file's seal instead (cleared before the job, kept as a plain unchanged row)
    with (corpus / "records.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "doc-extra", "text": "Record extra: one more about shards."}) + "\n")
    single = [
        key
        for key in expected
        if key.startswith("doc-") and key.endswith("#0") and key[:-1] + "1" not in expected
    ]
    first_single = "doc-00000#0" in single
    edited = run_ray(store_target, corpus, tiny_model_dir)
    assert edited.files_unchanged == 2 and edited.embedded == 1
    assert edited.skipped_documents == len(single) - first_single + 2 > 10  # + notes.txt, guide.md
    expected = expected_rows(encoder, corpus)
    assert {id_: text for id_, (text, _, _) in dump_rows(*store_target).items()} == expected

    (corpus / "notes.txt").write_text("Short notes now.", encoding="utf-8")
    shrunk = run_ray(store_target, corpus, tiny_model_dir)
    now = expected_rows(encoder, corpus)
    assert shrunk.deleted_stale == len(expected) - len(now) > 0
    assert shrunk.embedded == 1  # notes.txt#0 changed text; nothing else
    assert {id_: text for id_, (text, _, _) in dump_rows(*store_target).items()} == now

    (corpus / "guide.md").unlink()  # a removed document: gone only with prune
    pruned = run_ray(store_target, corpus, tiny_model_dir, prune=True)
    assert (pruned.pruned, pruned.embedded) == (1, 0)
    assert {id_: text for id_, (text, _, _) in dump_rows(*store_target).items()} == expected_rows(
        encoder, corpus
    )


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
def test_id_root_poison_records_and_emptied_documents_as_in_the_local_engine(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    """Issue 11.1, 11.4, 11.6 on the Ray engine: ids relative to --id-root, a record the store
    refuses fails the scan (or is skipped), an emptied document loses its chunks."""
    from e5_integrations.sinks.pgvector import PGVectorSink

    corpus = write_corpus(tmp_path / "docs", documents=20)
    with (corpus / "records.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "poison", "text": "a NUL \u0000 byte"}) + "\n")
    with pytest.raises(SourceError, match=r"records.jsonl:21: .*NUL"):
        run_ray(store_target, corpus, tiny_model_dir, id_root=corpus)
    with open_sink(*store_target) as sink:
        assert sink.count() == 0

    report = run_ray(store_target, corpus, tiny_model_dir, id_root=corpus, on_error="skip")
    options = {"id_root": corpus, "on_error": "skip", "check": PGVectorSink.check_document}
    expected = expected_rows(encoder, corpus, **options)
    assert report.skipped_invalid == 1 and "guide.md#0" in expected and "notes.txt#1" in expected
    assert {id_: text for id_, (text, _, _) in dump_rows(*store_target).items()} == expected

    (corpus / "notes.txt").write_text(" \n", encoding="utf-8")
    emptied = run_ray(store_target, corpus, tiny_model_dir, id_root=corpus, on_error="skip")
    now = expected_rows(encoder, corpus, **options)
    assert emptied.deleted_stale == len(expected) - len(now) > 1
    assert (emptied.documents, emptied.skipped_empty, emptied.embedded) == (21, 1, 0)
    assert {id_: text for id_, (text, _, _) in dump_rows(*store_target).items()} == now


@pytest.mark.parametrize("store_target", ["pgvector", "chroma"], indirect=True)
def test_local_and_ray_engines_write_the_same_rows(
    ray_session: Any,
    store_target: tuple[str, str, str],
    pg_dsn: str,
    tiny_model_dir: Path,
    encoder: Any,
    tmp_path: Path,
) -> None:
    corpus = write_corpus(tmp_path / "docs", documents=60, seed=7)
    store, uri, collection = store_target
    # Chroma in LlamaIndex's layout: the driver resolves layout= and every worker writes in it
    layout = {"pgvector": "e5", "chroma": "llama-index"}[store]
    local_collection = collection + "_local"
    with open_sink(store, uri, local_collection, layout=layout) as sink:
        try:
            local = ingest([corpus], sink, encoder, **CHUNK)
            local_rows = dump_rows(store, uri, local_collection)
        finally:
            sink.drop()
    remote = run_ray(store_target, corpus, tiny_model_dir, embed_batch_rows=16, layout=layout)
    ray_rows = dump_rows(*store_target)
    assert (remote.layout, local.layout) == (layout, layout)
    if layout == "llama-index":
        assert all(metadata["_node_type"] == "TextNode" for _, metadata, _ in ray_rows.values())

    assert sorted(ray_rows) == sorted(local_rows)
    marked = 0
    for id_, (text, metadata, vector) in local_rows.items():
        ray_text, ray_metadata, ray_vector = ray_rows[id_]
        # the local engine marks every document's chunk 0, Ray only a one-chunk document's
        # (its writers run in parallel): the content hashes agree, and so do the marks Ray writes
        local_hash, metadata = _unmarked(metadata)
        ray_hash, ray_metadata = _unmarked(ray_metadata)
        assert ray_hash.content_hash == local_hash.content_hash, id_
        if ray_hash.fingerprint is not None and local_hash.seal is None:  # a file's seal replaces its mark
            assert ray_hash == local_hash, id_
            marked += 1
        assert (ray_text, ray_metadata) == (text, metadata), id_
        # fp32 on CPU; batches differ between the engines, so allow float rounding only
        assert np.allclose(ray_vector, vector, atol=1e-5), id_
    for field in ("documents", "chunks", "embedded", "tokens_embedded", "written", "skipped_unchanged"):
        assert getattr(remote, field) == getattr(local, field), field
    assert marked > 0


def _unmarked(metadata: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The stored hash of a row (content hash and mark), and its metadata without the hash
    (also inside LlamaIndex's ``_node_content``)."""
    metadata = dict(metadata)
    stored = parse_stored_hash(metadata.pop("e5_content_hash"))
    if "_node_content" in metadata:
        node = json.loads(metadata["_node_content"])
        node["metadata"].pop("e5_content_hash")
        metadata["_node_content"] = json.dumps(node, sort_keys=True)
    return stored, metadata


def _embedding_actors() -> dict[int, str]:
    """``{pid: process title}`` of the embedding actors (Ray titles them after the task)."""
    import psutil

    actors = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(process.info["cmdline"] or []).strip()  # Ray pads the title with spaces
        if title.startswith("ray::") and "EmbedChunks" in title:
            actors[process.info["pid"]] = title
    return actors


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
def test_killed_embedding_actor_still_ends_exact(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, encoder: Any, tmp_path: Path
) -> None:
    """SIGKILL the embedding actor while it is running a task, mid-run; Ray restarts it and
    retries the task, and the store still ends with exactly one row per chunk."""
    corpus = write_corpus(tmp_path / "docs", documents=2000, seed=3)
    expected = expected_rows(encoder, corpus)
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            outcome["report"] = run_ray(store_target, corpus, tiny_model_dir, embed_batch_rows=4)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    busy: dict[int, str] = {}
    killed = False
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        busy = {pid: title for pid, title in _embedding_actors().items() if title.endswith(".submit")}
        if not busy:
            time.sleep(0.02)
            continue
        time.sleep(1.0)  # let it embed and hand on some batches
        for pid in busy:
            os.kill(pid, signal.SIGSTOP)  # freeze it, then check it really is mid-task
        still_busy = {
            pid for pid, title in _embedding_actors().items() if pid in busy and title.endswith(".submit")
        }
        for pid in busy:
            os.kill(pid, signal.SIGKILL if still_busy else signal.SIGCONT)
        killed = bool(still_busy)  # between two tasks: let it go on and try again
    assert killed, (
        f"never caught the embedding actor inside a task ({outcome.get('error')!r}); make the corpus larger"
    )
    restarted: set[int] = set()
    while thread.is_alive():
        restarted |= set(_embedding_actors()) - set(busy)
        thread.join(timeout=0.05)
    if "error" in outcome:
        raise outcome["error"]
    assert restarted, "Ray did not start a new embedding actor after the kill"

    report = outcome["report"]
    print(report.summary())
    rows = dump_rows(*store_target)
    assert {id_: text for id_, (text, _, _) in rows.items()} == expected
    assert report.chunks == len(expected)
    # a retried task may find rows its killed attempt had stored: they count as unchanged
    assert report.written + report.skipped_unchanged == len(expected)
    assert report.embedded == report.written
    with open_sink(*store_target) as sink:
        assert sink.count() == len(expected)


def test_embedded_stores_are_refused_with_the_fix(tmp_path: Path, tiny_model_dir: Path) -> None:
    from e5_integrations.ray import ingest_ray

    corpus = write_corpus(tmp_path / "docs", documents=2)
    with pytest.raises(ConfigurationError, match="embedded single-process store.*uri=.*local engine"):
        ingest_ray([corpus], uri=str(tmp_path / "chroma"), model=str(tiny_model_dir))
    with pytest.raises(ConfigurationError, match="embedded single-process"):
        ingest_ray([corpus], store="milvus", uri=str(tmp_path / "m.db"), model=str(tiny_model_dir))


def test_more_gpus_than_the_cluster_has_is_an_error(ray_session: Any) -> None:
    from e5_integrations.ray._engine import _plan_workers

    assert _plan_workers(ray_session, None, None) == (0.0, 1)
    assert _plan_workers(ray_session, 0, 2) == (0.0, 2)
    with pytest.raises(ConfigurationError, match="has 0 GPUs.*gpus_per_worker=0"):
        _plan_workers(ray_session, 1, None)


@pytest.mark.parametrize("store_target", ["chroma"], indirect=True)
def test_cli_engine_ray_then_search(
    ray_session: Any,
    store_target: tuple[str, str, str],
    tiny_model_dir: Path,
    encoder: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from e5_integrations.cli import main

    store, uri, collection = store_target
    corpus = write_corpus(tmp_path / "docs", documents=20, seed=5)
    target = [
        "--store",
        store,
        "--uri",
        uri,
        "--collection",
        collection,
        "--model",
        str(tiny_model_dir),
        "--dtype",
        "fp32",
    ]
    status = main(
        [
            "ingest",
            str(corpus),
            *target,
            "--engine",
            "ray",
            "--workers",
            "1",
            "--writers",
            "1",
            "--gpus-per-worker",
            "0",
            "--chunk-tokens",
            "48",
            "--chunk-overlap",
            "8",
            "--json",
            "--no-progress",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    expected = expected_rows(encoder, corpus)
    assert (report["documents"], report["chunks"], report["written"]) == (22, len(expected), len(expected))

    assert main(["search", "Rotate the API key", *target, "-k", "3", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    vectors = dump_rows(*store_target)
    query = encoder.encode_queries(["Rotate the API key"])[0]
    best = sorted(vectors, key=lambda id_: -float(np.dot(vectors[id_][2], query)))[:3]
    assert [hit["id"] for hit in hits] == best


def test_cli_rejects_flags_of_the_other_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from e5_integrations.cli import main

    corpus = write_corpus(tmp_path / "docs", documents=1)
    assert main(["ingest", str(corpus), "--workers", "2"]) == 2
    assert "--workers only apply to --engine ray" in capsys.readouterr().err
    assert main(["ingest", str(corpus), "--engine", "ray", "--device", "cuda:1"]) == 2
    assert "--device is for --engine local" in capsys.readouterr().err


def test_kuberay_example_runs_a_valid_e5_command() -> None:
    """examples/ray/rayjob.yaml: the entrypoint parses with our CLI and its GPU plan fits the
    worker group (no Kubernetes here; this checks what can go stale)."""
    import shlex

    import yaml

    from e5_integrations.cli import build_parser

    path = Path(__file__).resolve().parents[2] / "examples" / "ray" / "rayjob.yaml"
    job = yaml.safe_load(path.read_text())
    assert job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "e5"
    args = build_parser().parse_args(argv[1:])
    assert args.engine == "ray" and args.ray_address == "auto"
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus_per_pod = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    assert args.workers * args.gpus_per_worker <= group["replicas"] * gpus_per_pod


def test_sources_without_any_document_are_an_error_before_ray_starts(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from e5_integrations import SourceError
    from e5_integrations.ray import ingest_ray

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "slides.key").write_bytes(b"PK")  # Keynote: not read (.pptx is, since issue 20)
    # the store is never reached: the check pass finds nothing to ingest first
    with pytest.raises(SourceError, match=r"nothing to ingest.*\.key x1"):
        ingest_ray([empty], store="pgvector", uri="postgresql://u@127.0.0.1:1/db", model=str(tiny_model_dir))


@pytest.mark.parametrize("store_target", ["pgvector"], indirect=True)
def test_recipe_reaches_the_actors_and_the_content_hashes(
    ray_session: Any, store_target: tuple[str, str, str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    from e5_integrations import E5Encoder

    corpus = write_corpus(tmp_path / "docs", documents=8, seed=3)
    store, uri, collection = store_target
    sgpt = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32", recipe="sgpt-nobrackets")
    with open_sink(store, uri, collection + "_local") as sink:
        try:
            ingest([corpus], sink, sgpt, **CHUNK)
            local_rows = dump_rows(store, uri, collection + "_local")
        finally:
            sink.drop()
    first = run_ray(store_target, corpus, tiny_model_dir)  # the default recipe, e5-mistral
    switched = run_ray(store_target, corpus, tiny_model_dir, recipe="sgpt-nobrackets")
    assert switched.embedded == switched.chunks == first.chunks  # a new recipe re-embeds everything
    ray_rows = dump_rows(*store_target)
    assert sorted(ray_rows) == sorted(local_rows)
    for id_, (text, metadata, vector) in local_rows.items():
        local_hash, metadata = _unmarked(metadata)
        ray_hash, ray_metadata = _unmarked(ray_rows[id_][1])
        assert ray_hash.content_hash == local_hash.content_hash, id_  # the same content hash
        assert (ray_rows[id_][0], ray_metadata) == (text, metadata), id_
        assert np.allclose(ray_rows[id_][2], vector, atol=1e-5), id_


def test_unknown_recipe_fails_before_any_ray_work(tmp_path: Path, tiny_model_dir: Path) -> None:
    from e5_integrations.ray import ingest_ray

    corpus = write_corpus(tmp_path / "docs", documents=2)
    with pytest.raises(ConfigurationError, match="unknown recipe 'bert'.*qwen3-embedding"):
        ingest_ray(
            [corpus],
            store="pgvector",
            uri="postgresql://nobody@127.0.0.1:1/x",
            model=str(tiny_model_dir),
            recipe="bert",
        )
