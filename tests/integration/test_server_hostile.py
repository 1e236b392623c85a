"""``e5 serve`` under hostile traffic (issue 22): every abuse gets its documented status, never
a 500, and the server stays healthy afterwards.

One server subprocess (module scope) with short transport limits takes every test but the
SIGTERM one, which needs a server of its own. Statuses, counters and states are asserted,
never wall-clock bounds: the waits are generous (a loaded CI machine is 5-10x slower).
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_server import KEY, Server

pytest.importorskip("httpx")
import httpx

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

pytestmark = pytest.mark.integration

#: The transport limits of the shared server (seconds), short so closes are quick to observe.
TIMEOUT_S = 3
MAX_CONNECTIONS = 12


@pytest.fixture(scope="module")
def hostile(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("hostile") / "serve.log"
    running = Server(
        tiny_model_dir,
        "--header-timeout",
        str(TIMEOUT_S),
        "--body-timeout",
        str(TIMEOUT_S),
        "--idle-timeout",
        str(TIMEOUT_S),
        "--max-connections",
        str(MAX_CONNECTIONS),
        api_key=KEY,
        log=log,
    )
    yield running
    code, out = running.stop()
    assert code == 0, out[-3000:]
    assert KEY not in out


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def _post(server: Server, path: str, body: object) -> httpx.Response:
    """POST ``body`` as JSON text: ``json.dumps`` writes lone surrogates as ``\\ud800`` escapes."""
    return httpx.post(
        server.url + path,
        content=json.dumps(body).encode("ascii"),
        headers={**_auth(), "Content-Type": "application/json"},
        timeout=60,
    )


def _count(server: Server, route: str, status: int) -> float:
    return server.metric(f'e5_requests_total{{route="{route}",status="{status}"}}')


def _assert_healthy(server: Server) -> None:
    assert httpx.get(server.url + "/health", timeout=60).status_code == 200
    answer = _post(server, "/v1/embeddings", {"input": ["still fine"], "input_type": "query"})
    assert answer.status_code == 200, answer.text
    assert server.metric('e5_requests_total{route="/v1/embeddings",status="500"}') == 0


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.settimeout(60)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 60 s pass: a timeout
    error then fails the test)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# -- 1. lone surrogates ----------------------------------------------------------------------


def test_a_lone_surrogate_is_422_naming_where_it_is(hostile: Server) -> None:
    before = _count(hostile, "/v1/embeddings", 422)
    cut = "an emoji cut in half \ud83d"
    answer = _post(hostile, "/v1/embeddings", {"input": ["fine", cut]})
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]["message"]
    assert "input[1]" in message and "lone surrogate" in message and "\\ud83d" in message
    task = _post(hostile, "/v1/embeddings", {"input": "x", "input_type": "query", "task": "find \ud800 it"})
    assert task.status_code == 422 and "task" in task.json()["error"]["message"]
    native = _post(hostile, "/embed", {"documents": ["ok", "ok", "\udfff"]})
    assert native.status_code == 422 and "documents[2]" in native.json()["error"]["message"]
    tokenized = _post(hostile, "/tokenize", {"inputs": ["\ud800"]})
    assert tokenized.status_code == 422 and "inputs[0]" in tokenized.json()["error"]["message"]
    assert _count(hostile, "/v1/embeddings", 422) == before + 2
    _assert_healthy(hostile)


# -- 2. non-ASCII Authorization --------------------------------------------------------------


def test_a_non_ascii_authorization_header_is_401(hostile: Server) -> None:
    for value in (b"Bearer \xff\xfe\xe9", "Bearer clé".encode(), b"\xff"):
        with _connect(hostile) as sock:
            sock.sendall(
                b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " + value + b"\r\n\r\n"
            )
            answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert KEY.encode() not in answer
    _assert_healthy(hostile)


# -- 3. deeply nested JSON ----------------------------------------------------------------------


def test_deeply_nested_json_is_400(hostile: Server) -> None:
    before = _count(hostile, "/v1/embeddings", 400)
    depth = 100_000
    for body in ("[" * depth + "]" * depth, '{"input": ' + "[" * depth + "]" * depth + "}"):
        answer = httpx.post(
            hostile.url + "/v1/embeddings",
            content=body.encode(),
            headers={**_auth(), "Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 400, answer.text[:300]
        assert "too deeply" in answer.json()["error"]["message"]
    # nested, but shallow enough to parse: a clear 422, not a crash while describing it
    answer = _post(hostile, "/v1/embeddings", {"input": ["ok", json.loads("[" * 500 + "]" * 500)]})
    assert answer.status_code == 422 and "input[1] is list" in answer.json()["error"]["message"]
    assert _count(hostile, "/v1/embeddings", 400) == before + 2
    _assert_healthy(hostile)


# -- 5. the key in a query string --------------------------------------------------------------


def test_a_key_in_the_query_string_is_not_logged(hostile: Server) -> None:
    assert httpx.get(f"{hostile.url}/health?api_key={KEY}", timeout=60).status_code == 200
    answer = httpx.post(
        f"{hostile.url}/v1/embeddings?api_key={KEY}&x=1", json={"input": "x"}, headers=_auth(), timeout=60
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 60
    while "/v1/embeddings?<redacted>" not in hostile.output() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = hostile.output()
    assert "GET /health?<redacted>" in log and "/v1/embeddings?<redacted>" in log, log[-2000:]
    assert KEY not in log


# -- 7. slow and idle connections, the connection cap ------------------------------------------


def test_slow_and_idle_connections_are_closed(hostile: Server) -> None:
    idle = [_connect(hostile) for _ in range(4)]  # connect, send nothing
    slow_headers = [_connect(hostile) for _ in range(3)]
    for sock in slow_headers:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # the rest never comes
    slow_body = [_connect(hostile) for _ in range(3)]
    for sock in slow_body:
        head = (
            "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"input": ')  # 10 of 100 bytes
    kept_alive = _connect(hostile)
    kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # answered, then idle

    for sock in idle + slow_headers:
        assert _read_until_closed(sock) == b""  # closed without an answer
    for sock in slow_body:
        answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"--body-timeout" in answer, answer[:300]
    assert _read_until_closed(kept_alive).startswith(b"HTTP/1.1 200")  # then closed when idle
    for sock in [*idle, *slow_headers, *slow_body, kept_alive]:
        sock.close()
    assert _count(hostile, "/v1/embeddings", 408) == 3
    _assert_healthy(hostile)


def test_connections_past_the_cap_get_503(hostile: Server) -> None:
    held = [_connect(hostile) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # let the server accept them all
        with _connect(hostile) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_until_closed(extra).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    _assert_healthy(hostile)


# -- 8. field types, one status per kind of error ----------------------------------------------


@pytest.mark.parametrize("value", [False, 0, [], "", "Query", {"x": 1}])
def test_a_bad_input_type_is_422(hostile: Server, value: object) -> None:
    answer = _post(hostile, "/v1/embeddings", {"input": "x", "input_type": value})
    assert answer.status_code == 422, answer.text
    assert "input_type must be 'query' or 'document'" in answer.json()["error"]["message"]
    tokenized = _post(hostile, "/tokenize", {"inputs": ["x"], "input_type": value})
    assert tokenized.status_code == 422


def test_bad_task_and_format_values_are_422(hostile: Server) -> None:
    for body, field in [
        ({"input": "x", "task": "SciFactt"}, "SciFact"),  # an unknown one-word name
        ({"input": "x", "task": 5}, "task must be"),
        ({"input": "x", "task": ""}, "task must be"),
        ({"input": "x", "encoding_format": False}, "encoding_format"),
        ({"input": "x", "encoding_format": "binary"}, "encoding_format"),
        ({"input": "x", "dimensions": "8"}, "dimensions must be an integer"),
    ]:
        answer = _post(hostile, "/v1/embeddings", body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.json()["error"]["message"]
    assert _post(hostile, "/v1/embeddings", {"input": "x", "input_type": None}).status_code == 200


# -- 9. JSON only, /v1/models and the served name ----------------------------------------------


def test_only_json_bodies_are_accepted(hostile: Server) -> None:
    body = json.dumps({"input": "x"}).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = _auth() if content_type is None else {**_auth(), "Content-Type": content_type}
        answer = httpx.post(hostile.url + "/v1/embeddings", content=body, headers=headers, timeout=60)
        assert answer.status_code == 415, (content_type, answer.text)
        assert "application/json" in answer.json()["error"]["message"]
    headers = {**_auth(), "Content-Type": "application/json; charset=utf-8"}
    assert (
        httpx.post(hostile.url + "/v1/embeddings", content=body, headers=headers, timeout=60).status_code
        == 200
    )


def test_v1_models_and_answers_give_the_served_name_not_the_path(
    hostile: Server, tiny_model_dir: Path
) -> None:
    name = tiny_model_dir.resolve().name
    models = httpx.get(hostile.url + "/v1/models", headers=_auth(), timeout=60)
    assert models.status_code == 200
    assert [row["id"] for row in models.json()["data"]] == [name]
    assert httpx.get(hostile.url + "/v1/models", timeout=60).status_code == 401
    embedded = _post(hostile, "/v1/embeddings", {"input": "x"})
    assert embedded.json()["model"] == name
    info = httpx.get(hostile.url + "/info", headers=_auth(), timeout=60)
    assert info.json()["model"] == name
    for text in (models.text, embedded.text, info.text):
        assert str(tiny_model_dir.resolve()) not in text and str(tiny_model_dir) not in text
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=hostile.url + "/v1", api_key=KEY)
    assert [model.id for model in client.models.list()] == [name]


# -- 11. threads -----------------------------------------------------------------------------


def test_threads_default_to_the_usable_cpus_less_one(hostile: Server) -> None:
    from e5_integrations.server._cpus import default_threads, usable_cpus

    info = httpx.get(hostile.url + "/info", headers=_auth(), timeout=60).json()
    # this test and the server share affinity and cgroup
    assert info["threads"] == default_threads() == max(1, usable_cpus() - 1)
    assert info["limits"]["max_connections"] == MAX_CONNECTIONS


# -- 4. 500s are counted (after every test above: none so far) ----------------------------------


def test_no_request_above_got_a_500(hostile: Server) -> None:
    text = httpx.get(hostile.url + "/metrics", timeout=60).text
    assert 'status="500"' not in text
    assert "Traceback" not in hostile.output()


# -- 6. SIGTERM with a client stuck in its body (a server of its own) ----------------------------


def test_sigterm_is_not_held_by_a_client_stuck_in_its_body(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The body timeout is long here: only the shutdown can end the stalled request, with a
    503 at once (not after the 120 s drain, and not a 500). ``--threads 1`` is reported."""
    running = Server(tiny_model_dir, "--body-timeout", "600", "--threads", "1", log=tmp_path / "log")
    try:
        assert httpx.get(running.url + "/info", timeout=60).json()["threads"] == 1
        with _connect(running) as stalled:
            # Expect: 100-continue makes the server say when the app starts reading the body,
            # so the signal comes while it waits for the rest (however slow the machine).
            stalled.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
            )
            interim = b""
            while b"\r\n\r\n" not in interim:
                interim += stalled.recv(65536)
            assert interim.startswith(b"HTTP/1.1 100"), interim
            stalled.sendall(b'{"input": ')
            time.sleep(0.5)
            running.process.send_signal(signal.SIGTERM)
            answer = _read_until_closed(stalled)
        # well under the 120 s drain: stop() gives up (and fails the test) after 60 s
        code, out = running.stop(timeout=60)
    finally:
        if running.process.poll() is None:
            running.process.kill()
    assert answer.startswith(b"HTTP/1.1 503") and b"shutting down" in answer, answer[:300]
    assert code == 0, out[-3000:]
    assert "Traceback" not in out
