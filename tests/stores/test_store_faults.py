"""Store faults (issue 11, items 2, 7, 8, 9), on real engines and real sockets.

- no password, token or API key from a URI is ever shown (errors, tracebacks, logs);
- a server that accepts connections and never answers times out (every store);
- an outage shorter than the retry budget is ridden out, a longer one is reported clearly;
- raw client errors become messages that say what was received, expected, and how to fix it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from e5_integrations import ConfigurationError, SchemaMismatchError, StoreError, StoreUnavailableError
from e5_integrations.ingest import ingest, open_sink, search
from tests.stores._chroma_server import free_port, running_chroma_server
from tests.stores._common import DIM, SinkFactory, records, unit
from tests.stores._fake_servers import http_status_server, silent_server

if TYPE_CHECKING:
    from e5_integrations import E5Encoder
    from e5_integrations.sinks.pgvector import PGVectorSink

pytestmark = [
    pytest.mark.integration,
    # qdrant-client warns when an API key goes over http://, as these local servers are
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection"),
]

SECRET = "s3cret-Pa55"
STORES = ["chroma", "milvus", "qdrant", "pgvector"]


def _everything_shown(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """The error's full traceback (causes included) and every log line of the package."""
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("e5_integrations"))
    return "".join(traceback.format_exception(error)) + logged


def _unreachable_target(store: str, port: int) -> tuple[str, dict[str, Any]]:
    """A URI with credentials (and options) for ``store`` on a port nothing answers."""
    if store == "pgvector":
        return f"postgresql://bob:{SECRET}@127.0.0.1:{port}/db", {"connect_timeout": 2}
    if store == "qdrant":
        return f"http://127.0.0.1:{port}", {"api_key": SECRET, "timeout": 2}
    return f"http://admin:{SECRET}@127.0.0.1:{port}", {"timeout": 2}


# -- 2. secrets ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_credentials_never_appear_in_errors_or_logs(store: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    uri, options = _unreachable_target(store, free_port())
    with pytest.raises(StoreUnavailableError) as info:
        sink = open_sink(store, uri, "e5_secret", retry_seconds=0.5, **options)
        assert SECRET not in repr(sink) and SECRET not in sink.uri  # type: ignore[attr-defined]
        sink.ensure_collection(DIM)
    shown = _everything_shown(info.value, caplog)
    assert SECRET not in shown
    if store != "qdrant":
        assert "***@127.0.0.1" in str(info.value)  # the URI is named, redacted


# -- 7. timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_a_server_that_never_answers_times_out(store: str) -> None:
    with silent_server(lifetime=40) as port:
        uri, options = _unreachable_target(store, port)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1") as info:
            sink = open_sink(store, uri, "e5_hung", retry_seconds=1, **options)
            sink.ensure_collection(DIM)
        elapsed = time.monotonic() - started
    assert elapsed < 20, f"{store} waited {elapsed:.0f} s on a silent server"
    assert "retry_seconds=" in str(info.value)


def test_pgvector_statement_blocked_by_a_lock_times_out(pg_sink: SinkFactory[PGVectorSink]) -> None:
    sink = pg_sink(statement_timeout=1)
    sink.ensure_collection(DIM)
    holder = pg_sink(sink.collection)._connection()
    holder.execute("BEGIN")
    holder.execute(f'LOCK TABLE "{sink.collection}" IN ACCESS EXCLUSIVE MODE')
    release = threading.Timer(30, holder.execute, ("ROLLBACK",))  # bounded even before the fix
    release.start()
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match="statement_timeout"):
            sink.count()
    finally:
        release.cancel()
        holder.execute("ROLLBACK")
    assert time.monotonic() - started < 10


# -- 8. outages and the retry budget ------------------------------------------------------


def _docs(root: Path, n: int) -> Path:
    folder = root / "docs"
    folder.mkdir()
    for i in range(n):
        (folder / f"d{i}.txt").write_text(f"document number {i} about topic {i % 3}", encoding="utf-8")
    return folder


def test_chroma_outage_shorter_than_the_budget_is_ridden_out(tmp_path: Path, encoder: E5Encoder) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    port = free_port()
    first = running_chroma_server(tmp_path, port)
    url = first.__enter__()
    sink = ChromaSink(url, "e5-outage", retry_seconds=60)
    sink.ensure_collection(encoder.dimension)
    first.__exit__(None, None, None)  # the server goes down...

    back, done = threading.Event(), threading.Event()

    def restart_after_5_s() -> None:
        time.sleep(5)
        with running_chroma_server(tmp_path, port):  # ...and comes back on the same port
            back.set()
            done.wait(120)

    thread = threading.Thread(target=restart_after_5_s, daemon=True)
    thread.start()
    try:
        report = ingest(_docs(tmp_path, 4), sink, encoder)
        assert back.is_set()
        assert (report.written, sink.count()) == (4, 4)
        assert report.seconds >= 5 and report.retry_wait_seconds >= 3
        assert report.seconds >= report.retry_wait_seconds
        assert "waiting for the store" in report.summary()
    finally:
        done.set()
        thread.join(30)
        sink.close()


def test_chroma_outage_longer_than_the_budget_names_the_uri_and_the_flag(tmp_path: Path) -> None:
    from e5_integrations.sinks.chroma import ChromaSink

    with running_chroma_server(tmp_path) as url:
        with_credentials = url.replace("http://", f"http://admin:{SECRET}@")
        sink = ChromaSink(with_credentials, "e5-gone", retry_seconds=2)
        sink.ensure_collection(DIM)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        sink.count()
    assert 2 <= time.monotonic() - started < 15
    message = str(info.value)
    assert url.replace("http://", "http://admin:***@") in message
    assert "retry_seconds=" in message and SECRET not in message
    sink.close()


@pytest.mark.parametrize("store", STORES)
def test_every_store_takes_the_same_retry_budget(store: str) -> None:
    uri, options = _unreachable_target(store, free_port())
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"over [23]\.\d s"):
        open_sink(store, uri, "e5_budget", retry_seconds=2.5, **options).ensure_collection(DIM)
    assert 2.5 <= time.monotonic() - started < 15


# -- 9. clear messages instead of raw tracebacks -------------------------------------------


@pytest.mark.parametrize("name", ['say"hi', "a/b", "back\\slash", "", "x" * 256])
def test_qdrant_refuses_names_a_server_cannot_hold(name: str, tmp_path: Path) -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    with pytest.raises(ConfigurationError, match="invalid Qdrant collection name.*--collection"):
        QdrantSink(str(tmp_path / "q"), name)


def test_qdrant_401_says_the_api_key_is_wrong() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    with http_status_server(401, "Must provide an API key or an Authorization bearer token") as url:
        sink = QdrantSink(url, "docs", api_key=SECRET, retry_seconds=5)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"HTTP 401.*--api-key.*QDRANT_API_KEY") as info:
            sink.ensure_collection(DIM)
        sink.close()
    assert not isinstance(info.value, StoreUnavailableError)
    assert time.monotonic() - started < 3  # refused, not retried
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_qdrant_500_reports_the_server_error() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    with http_status_server(500, "Service internal error: disk full") as url:
        sink = QdrantSink(url, "docs", retry_seconds=5)
        with pytest.raises(StoreError, match=r"Qdrant server at http://127.*HTTP 500.*disk full"):
            sink.upsert(records(2))
        sink.close()


def test_qdrant_503_is_retried_then_unavailable() -> None:
    from e5_integrations.sinks.qdrant import QdrantSink

    with http_status_server(503, "overloaded") as url:
        sink = QdrantSink(url, "docs", retry_seconds=1.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="503"):
            sink.count()
        sink.close()
    assert time.monotonic() - started >= 1.5


def test_search_with_a_model_of_another_dimension_names_both(tmp_path: Path, encoder: E5Encoder) -> None:
    sink = open_sink("chroma", str(tmp_path / "chroma"), "e5_docs")
    other = encoder.dimension // 2
    sink.ensure_collection(other)
    sink.upsert(records(2, dim=other))
    with pytest.raises(SchemaMismatchError) as info:
        search("which topic?", sink, encoder)
    message = str(info.value)
    assert f"{other}-dimensional" in message and f"{encoder.dimension}-dimensional" in message
    assert encoder.model_name in message and "--model" in message
    sink.close()


def _hba_role(pg_dsn: str, admin: Any, password: str) -> tuple[str, str, str]:
    """A login role with ``password`` that pg_hba.conf makes authenticate by password
    (the fixture's server trusts everyone else); returns (role, hba file, its old text)."""
    hba = Path(admin.execute("SHOW hba_file").fetchone()[0])
    try:
        old = hba.read_text()
        role = f"e5_pw_{uuid.uuid4().hex[:8]}"
        hba.write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n{old}")
    except OSError:
        pytest.skip(f"cannot edit {hba} (an external PG_DSN server?)")
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    admin.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    return role, str(hba), old


def test_pgvector_wrong_password_says_authentication_failed(
    pg_sink: SinkFactory[PGVectorSink], pg_dsn: str
) -> None:
    from psycopg.conninfo import make_conninfo

    from e5_integrations.sinks.pgvector import PGVectorSink

    admin = pg_sink()._connection()
    # the admin's LangChain PGVector tables, which the new role may not read: layout detection
    # must not fail on them (it did: "permission denied for table langchain_pg_collection")
    pg_sink(layout="langchain-legacy").ensure_collection(DIM)
    role, hba, old = _hba_role(pg_dsn, admin, "right-Pa55")
    try:
        good = PGVectorSink(make_conninfo(pg_dsn, user=role, password="right-Pa55"), "t", retry_seconds=1)
        try:
            assert good.count() == 0  # the role works with its password
        finally:
            good.close()
        wrong = PGVectorSink(make_conninfo(pg_dsn, user=role, password=SECRET), "t", retry_seconds=10)
        started = time.monotonic()
        with pytest.raises(StoreError, match="authentication failed") as info:
            wrong.count()
        assert time.monotonic() - started < 3  # a refusal is not retried as "unreachable"
        assert not isinstance(info.value, StoreUnavailableError)
        assert "--uri" in str(info.value) and "password=***" in str(info.value)
        assert SECRET not in "".join(traceback.format_exception(info.value))
    finally:
        Path(hba).write_text(old)
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_pgvector_first_runs_racing_on_a_fresh_database(
    pg_sink: SinkFactory[PGVectorSink], pg_dsn: str
) -> None:
    from psycopg.conninfo import make_conninfo

    from e5_integrations.sinks.pgvector import PGVectorSink

    admin = pg_sink()._connection()
    for _ in range(3):
        database = f"e5_race_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{database}"')
        dsn = make_conninfo(pg_dsn, dbname=database)
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def first_run(
            worker: int,
            dsn: str = dsn,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            sink = PGVectorSink(dsn, "docs", retry_seconds=5)
            try:
                sink._connection()  # connected, so that the four start creating at once
                barrier.wait(30)
                sink.ensure_collection(DIM)
                sink.upsert(records(2, prefix=f"w{worker}#"))
            except Exception as exc:
                errors.append(exc)
            finally:
                sink.close()

        threads = [threading.Thread(target=first_run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        try:
            assert errors == []
            check = PGVectorSink(dsn, "docs")
            assert check.count() == 8
            check.close()
        finally:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def test_pgvector_collection_named_like_the_staging_table(pg_sink: SinkFactory[PGVectorSink]) -> None:
    sink = pg_sink(collection="e5_stage")
    sink.ensure_collection(DIM)
    batch = records(3)
    sink.upsert(batch)
    sink.upsert(batch[:1])
    assert sink.count() == 3
    assert [hit.id for hit in sink.search(batch[2].embedding, 1)] == [batch[2].id]


def test_milvus_lite_file_held_by_another_process(tmp_path: Path) -> None:
    from e5_integrations.sinks.milvus import MilvusSink

    path = tmp_path / "held.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pymilvus import MilvusClient; "
                "c = MilvusClient(sys.argv[1]); c.list_collections(); print('ready', flush=True); time.sleep(60)"
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        with pytest.raises(StoreError, match="another process") as info:
            MilvusSink(str(path), "docs", retry_seconds=1)
        assert str(path) in str(info.value) and "--uri" in str(info.value)
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_search_vector_of_another_dimension_on_a_fresh_sink_is_not_an_error(tmp_path: Path) -> None:
    sink = open_sink("chroma", str(tmp_path / "chroma"), "e5_missing")
    assert search(unit(np.ones(DIM)), sink) == []  # no collection: nothing to compare with
    sink.close()
