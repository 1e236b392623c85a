"""``e5 serve`` against real clients: a real uvicorn server on 127.0.0.1 with the tiny model.

The official ``openai`` client and LangChain's ``OpenAIEmbeddings`` talk to it as they would to
OpenAI; the vectors must equal the in-process encoder's (fp32 CPU).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from e5_integrations import DEFAULT_TASK

if TYPE_CHECKING:
    from e5_integrations import E5Encoder

pytest.importorskip("httpx")
import httpx

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

pytestmark = pytest.mark.integration

KEY = "test-key-d41d8cd98f00"
SERVED_NAME = "e5-tiny-test"
QUERIES = ["how much protein should a female eat", "summit define", "capital of France?"]
DOCUMENTS = [
    "As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams per day.",
    "Definition of summit for English Language Learners: the highest point of a mountain.",
    "Paris is the capital and most populous city of France.",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``e5 serve`` in a subprocess; waits for ``/health`` (patiently: a loaded CI machine is slow)."""

    def __init__(
        self, model_dir: Path, *extra: str, api_key: str | None = None, log: Path | None = None
    ) -> None:
        """``log``: write the server's output there (readable while it runs) instead of a pipe."""
        self.port = _free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "e5_integrations.cli",
            "serve",
            "--model",
            str(model_dir),
            "--device",
            "cpu",
        ]
        command += ["--dtype", "fp32", "--port", str(self.port), *extra]
        env = dict(os.environ, E5_API_KEY=api_key or "", PYTHONUNBUFFERED="1")
        output: Any = subprocess.PIPE if log is None else log.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        if log is not None:
            output.close()  # the child holds its own copy
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"e5 serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("e5 serve did not become healthy in 300 s")
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (all labels) from ``/metrics``."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            match = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", line)
            if match:
                total += float(match.group(1))
        return total

    def output(self) -> str:
        """What the server printed so far (all of it once it exited)."""
        if self.log is not None:
            return self.log.read_text(errors="replace")
        if self.process.poll() is None:
            return ""
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        return self.process.returncode, out if self.log is None else self.output()


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[Server]:
    """The main server: API key on, payload limit lowered so 413 is cheap to provoke."""
    running = Server(
        tiny_model_dir,
        "--max-payload-bytes",
        "200000",
        "--max-inputs",
        "64",
        "--served-model-name",
        SERVED_NAME,
        api_key=KEY,
    )
    yield running
    code, out = running.stop()
    assert code == 0, out[-3000:]
    assert KEY not in out  # the key never reaches the logs


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _assert_same(got: object, expected: np.ndarray) -> None:
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == expected.shape
    assert _cos(got, expected).min() >= 0.99999


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


# -- the official OpenAI client --------------------------------------------------------------


def test_openai_client_queries_documents_and_base64(server: Server, encoder: E5Encoder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)

    queries = client.embeddings.create(
        model="e5", input=QUERIES, encoding_format="float", extra_body={"input_type": "query", "task": "NQ"}
    )
    _assert_same([row.embedding for row in queries.data], encoder.encode_queries(QUERIES, task="NQ"))
    formatted = [encoder.recipe.format_query(encoder_task_instruction("NQ"), q) for q in QUERIES]
    assert queries.usage.prompt_tokens == sum(encoder.count_tokens(formatted))

    documents = client.embeddings.create(model="e5", input=DOCUMENTS, encoding_format="float")
    _assert_same([row.embedding for row in documents.data], encoder.encode_documents(DOCUMENTS))
    assert documents.usage.total_tokens == sum(encoder.count_tokens(DOCUMENTS))

    # Without encoding_format the client asks for base64 and decodes it itself.
    default = client.embeddings.create(model="e5", input=DOCUMENTS)
    _assert_same([row.embedding for row in default.data], encoder.encode_documents(DOCUMENTS))
    raw = client.embeddings.create(
        model="e5", input=QUERIES[0], encoding_format="base64", extra_body={"input_type": "query"}
    )
    vector = np.frombuffer(base64.b64decode(raw.data[0].embedding), dtype="<f4")
    _assert_same([vector], encoder.encode_queries(QUERIES[:1]))


def encoder_task_instruction(name: str) -> str:
    from e5_integrations import resolve_task

    return resolve_task(name).instruction


def test_symmetric_task_applies_the_instruction_to_documents(server: Server, encoder: E5Encoder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    sts = client.embeddings.create(model="e5", input=DOCUMENTS, extra_body={"task": "STS"})
    expected = encoder.encode_documents(DOCUMENTS, task="STS")
    _assert_same([row.embedding for row in sts.data], expected)
    assert _cos(expected, encoder.encode_documents(DOCUMENTS)).max() < 0.9999  # the instruction mattered


def test_token_id_input_equals_text_input(server: Server, encoder: E5Encoder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY)
    ids = [encoder.tokenizer(text, add_special_tokens=False)["input_ids"] for text in DOCUMENTS]
    answer = client.embeddings.create(model="e5", input=ids, encoding_format="float")
    _assert_same([row.embedding for row in answer.data], encoder.encode_documents(DOCUMENTS))
    single = client.embeddings.create(model="e5", input=ids[0], encoding_format="float")
    _assert_same([single.data[0].embedding], encoder.encode_documents(DOCUMENTS[:1]))


def test_dimensions_other_than_the_models_is_a_clear_400(server: Server, encoder: E5Encoder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="Matryoshka"):
        client.embeddings.create(model="e5", input="x", dimensions=8)
    same = client.embeddings.create(model="e5", input="x", dimensions=encoder.dimension)
    assert len(same.data[0].embedding) == encoder.dimension


def test_langchain_openai_embeddings_for_documents(server: Server, encoder: E5Encoder) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="e5", base_url=server.url + "/v1", api_key=KEY, check_embedding_ctx_length=False
    )
    _assert_same(embeddings.embed_documents(DOCUMENTS), encoder.encode_documents(DOCUMENTS))


# -- native routes, limits, auth -------------------------------------------------------------


def test_native_embed_tokenize_and_info(server: Server, encoder: E5Encoder) -> None:
    with httpx.Client(base_url=server.url, headers=_headers(), timeout=30) as client:
        answer = client.post("/embed", json={"queries": QUERIES, "task": "SciFact"}).json()
        _assert_same(answer["embeddings"], encoder.encode_queries(QUERIES, task="SciFact"))
        answer = client.post("/embed", json={"documents": DOCUMENTS}).json()
        _assert_same(answer["embeddings"], encoder.encode_documents(DOCUMENTS))
        tokens = client.post("/tokenize", json={"inputs": QUERIES, "input_type": "query"}).json()
        formatted = [encoder.recipe.format_query(DEFAULT_TASK, q) for q in QUERIES]
        assert tokens["lengths"] == encoder.count_tokens(formatted)
        assert all(row[-1] == encoder.tokenizer.eos_token_id for row in tokens["tokens"])
        info = client.get("/info").json()
        assert (info["dimension"], info["max_length"]) == (encoder.dimension, encoder.max_length)
        assert info["limits"]["max_inputs"] == 64 and info["recipe"]["name"] == encoder.recipe.name


def test_422_names_the_bad_input(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=_headers(), timeout=30) as client:
        empty = client.post("/v1/embeddings", json={"input": ["fine", "", "also fine"]})
        assert empty.status_code == 422 and "input[1]" in empty.json()["error"]["message"]
        not_text = client.post("/v1/embeddings", json={"input": ["fine", 3.5]})
        assert not_text.status_code == 422 and "input[1] is float" in not_text.json()["error"]["message"]
        typo = client.post("/v1/embeddings", json={"input": "x", "task": "SciFactt"})
        assert typo.status_code == 422 and "SciFact" in typo.json()["error"]["message"]
        ids_query = client.post("/v1/embeddings", json={"input": [[1, 2, 3]], "input_type": "query"})
        assert (
            ids_query.status_code == 400 and "send text for queries" in ids_query.json()["error"]["message"]
        )
        bad_id = client.post("/v1/embeddings", json={"input": [[5, 10**9]]})
        assert bad_id.status_code == 422 and "outside the vocabulary" in bad_id.json()["error"]["message"]


def test_401_without_the_key_and_open_probes(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        answer = httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, headers=headers, timeout=30)
        assert answer.status_code == 401, headers
        assert "Bearer" in answer.json()["error"]["message"] and KEY not in answer.text
    assert httpx.get(server.url + "/info", timeout=30).status_code == 401
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200
    assert httpx.get(server.url + "/metrics", timeout=30).status_code == 200


def test_every_declared_route_is_served_guarded_and_labelled_as_declared(server: Server) -> None:
    """Issue 24: a route is declared once (path, methods, key, metrics label). Each route the
    table declares answers; each that needs the key gives 401 without it, counted under its own
    path; a path nobody declared is counted as "other"."""
    from e5_integrations.server._app import ENDPOINTS

    def count_401(route: str) -> float:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        pattern = rf'^e5_requests_total\{{(?=[^}}]*route="{re.escape(route)}")(?=[^}}]*status="401")[^}}]*\}} (\S+)$'
        return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))

    assert len({spec.path for spec in ENDPOINTS}) == len(ENDPOINTS) >= 9
    for spec in ENDPOINTS:
        method = spec.methods[0]
        before = count_401(spec.path)
        answer = httpx.request(method, server.url + spec.path, json={}, timeout=30)
        if spec.public:
            assert answer.status_code == 200, (spec.path, answer.text)
            continue
        assert answer.status_code == 401, (spec.path, answer.status_code)
        assert count_401(spec.path) == before + 1, spec.path
        keyed = httpx.request(method, server.url + spec.path, json={}, headers=_headers(), timeout=30)
        assert keyed.status_code in (200, 422), (spec.path, keyed.status_code, keyed.text)
    before = count_401("other")
    assert httpx.get(server.url + "/not-a-route", timeout=30).status_code == 401
    assert count_401("other") == before + 1


def test_413_for_a_large_payload_or_too_many_inputs(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=_headers(), timeout=30) as client:
        big = client.post("/v1/embeddings", json={"input": ["word " * 50_000]})
        assert big.status_code == 413 and "--max-payload-bytes" in big.json()["error"]["message"]
        many = client.post("/v1/embeddings", json={"input": ["x"] * 65})
        assert many.status_code == 413 and "--max-inputs" in many.json()["error"]["message"]


def test_64_concurrent_clients_get_their_own_vectors_in_few_forward_passes(
    server: Server, encoder: E5Encoder
) -> None:
    texts = [f"question number {i}: " + "why " * (i % 7) for i in range(64)]
    expected = encoder.encode_queries(texts)
    before = server.metric("e5_forward_passes_total")

    async def one(client: httpx.AsyncClient, text: str) -> list[float]:
        answer = await client.post("/v1/embeddings", json={"input": [text], "input_type": "query"})
        assert answer.status_code == 200, answer.text
        return answer.json()["data"][0]["embedding"]

    async def run() -> list[list[float]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=server.url, headers=_headers(), timeout=60, limits=limits
        ) as client:
            return await asyncio.gather(*(one(client, text) for text in texts))

    got = asyncio.run(run())
    _assert_same(got, expected)  # each caller got its own vector, not a neighbour's
    passes = server.metric("e5_forward_passes_total") - before
    assert 1 <= passes <= 24, f"{passes} forward passes for 64 requests"


# -- remote mode -----------------------------------------------------------------------------


def test_remote_encoder_sync_and_async_equal_local(server: Server, encoder: E5Encoder) -> None:
    from e5_integrations.server import RemoteEncoder

    remote = RemoteEncoder(server.url, api_key=KEY)
    assert (remote.dimension, remote.max_length, remote.model_name) == (
        encoder.dimension,
        encoder.max_length,
        SERVED_NAME,
    )
    _assert_same(remote.encode_queries(QUERIES, task="NQ"), encoder.encode_queries(QUERIES, task="NQ"))
    _assert_same(remote.encode_documents(DOCUMENTS), encoder.encode_documents(DOCUMENTS))
    _assert_same(
        remote.encode_documents(DOCUMENTS, task="STS"), encoder.encode_documents(DOCUMENTS, task="STS")
    )
    _assert_same(asyncio.run(remote.aencode_queries(QUERIES)), encoder.encode_queries(QUERIES))
    _assert_same(asyncio.run(remote.aencode_documents(DOCUMENTS)), encoder.encode_documents(DOCUMENTS))
    # More inputs than one request may carry (64): the client splits them.
    many = [f"document {i} " + "text " * (i % 11) for i in range(150)]
    _assert_same(remote.encode_documents(many), encoder.encode_documents(many))
    # the tokenizer comes from the server (GET /tokenizer): the served name is no model path
    assert remote.tokenizer("hello")["input_ids"] == encoder.tokenizer("hello")["input_ids"]
    assert remote.tokenizer.eos_token_id == encoder.tokenizer.eos_token_id
    remote.close()


def test_remote_errors_are_clear(server: Server) -> None:
    from e5_integrations.server import RemoteEncoder, ServerAuthError, ServerUnavailableError

    with pytest.raises(ServerAuthError, match="401.*E5_API_KEY"):
        RemoteEncoder(server.url, api_key="wrong").encode_queries(["x"])
    closed = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ServerUnavailableError, match="could not reach.*e5 serve"):
        RemoteEncoder(closed, api_key=KEY).encode_queries(["x"])


def test_langchain_and_llama_index_adapters_in_remote_mode(server: Server, encoder: E5Encoder) -> None:
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from e5_integrations.langchain import E5MistralEmbeddings
    from e5_integrations.llama_index import E5MistralEmbedding

    lc = E5MistralEmbeddings(base_url=server.url, api_key=KEY, task="NQ")
    assert KEY not in repr(lc)
    _assert_same(lc.embed_documents(DOCUMENTS), encoder.encode_documents(DOCUMENTS, task="NQ"))
    _assert_same([lc.embed_query(QUERIES[0])], encoder.encode_queries(QUERIES[:1], task="NQ"))
    _assert_same(asyncio.run(lc.aembed_documents(DOCUMENTS)), encoder.encode_documents(DOCUMENTS))
    _assert_same([asyncio.run(lc.aembed_query(QUERIES[1]))], encoder.encode_queries(QUERIES[1:2], task="NQ"))

    li = E5MistralEmbedding(base_url=server.url, api_key=KEY)
    _assert_same(li.get_text_embedding_batch(DOCUMENTS), encoder.encode_documents(DOCUMENTS))
    _assert_same([li.get_query_embedding(QUERIES[0])], encoder.encode_queries(QUERIES[:1]))
    _assert_same([asyncio.run(li.aget_query_embedding(QUERIES[2]))], encoder.encode_queries(QUERIES[2:]))
    # a recipe is the server's (e5 serve --recipe): asking for one in remote mode is an error
    with pytest.raises(ValueError, match="server's model and recipe"):
        E5MistralEmbeddings(base_url=server.url, api_key=KEY, recipe="sgpt")
    with pytest.raises(ValueError, match="server's model and recipe"):
        E5MistralEmbedding(base_url=server.url, api_key=KEY, recipe="sgpt")


def test_cli_ingest_and_search_through_the_server(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("chromadb")
    from e5_integrations.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(DOCUMENTS):
        (docs / f"{i}.txt").write_text(text)
    store = ["--uri", str(tmp_path / "store"), "--server", server.url, "--server-api-key", KEY]
    assert main(["ingest", str(docs), *store, "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["embedded"], report["written"]) == (3, 3)
    assert main(["search", DOCUMENTS[2], *store, "-k", "1", "--json"]) == 0
    assert "2.txt" in capsys.readouterr().out
    assert main(["search", "x", *store, "--model", "m"]) == 2
    assert "--server" in capsys.readouterr().err


# -- backpressure and shutdown (servers of their own) ----------------------------------------


def test_429_with_retry_after_past_the_queue_bound(tiny_model_dir: Path, encoder: E5Encoder) -> None:
    running = Server(tiny_model_dir, "--max-queue-tokens", "3000")
    try:
        text = "overload " * 100

        async def one(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post("/v1/embeddings", json={"input": [text] * 4})

        async def run() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(base_url=running.url, timeout=60, limits=limits) as client:
                return await asyncio.gather(*(one(client) for _ in range(32)))

        answers = asyncio.run(run())
        codes = [answer.status_code for answer in answers]
        assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
        rejected = next(answer for answer in answers if answer.status_code == 429)
        assert int(rejected.headers["Retry-After"]) >= 1
        assert "--max-queue-tokens" in rejected.json()["error"]["message"]
        assert running.metric('e5_requests_total{route="/v1/embeddings",status="429"}') == codes.count(429)

        # The client backs off on 429 and retries: eight concurrent callers all get their vectors.
        from concurrent.futures import ThreadPoolExecutor

        from e5_integrations.server import RemoteEncoder

        batches = [[f"caller {i} {j} " + text for j in range(4)] for i in range(8)]
        with RemoteEncoder(running.url, max_retries=20) as remote, ThreadPoolExecutor(8) as pool:
            results = list(pool.map(remote.encode_documents, batches))
        for batch, got in zip(batches, results, strict=False):
            _assert_same(got, encoder.encode_documents(batch))
        assert running.metric('e5_requests_total{route="/v1/embeddings",status="429"}') > codes.count(429)
    finally:
        code, out = running.stop()
    assert code == 0, out[-3000:]


def test_sigterm_drains_in_flight_requests_and_exits_0(tiny_model_dir: Path, encoder: E5Encoder) -> None:
    running = Server(tiny_model_dir)
    texts = [f"drain {i} " + "lorem ipsum " * 200 for i in range(12)]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=running.url, timeout=120) as client:
            tasks = [
                asyncio.create_task(client.post("/v1/embeddings", json={"input": texts})) for _ in range(4)
            ]
            deadline = time.monotonic() + 60
            # SIGTERM once the server has received all four (they are then in flight, mostly queued).
            while running.metric("e5_requests_in_progress") < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            running.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks)

    try:
        answers = asyncio.run(run())
    finally:
        code, out = running.stop()
    assert code == 0, out[-3000:]
    assert [answer.status_code for answer in answers] == [200] * 4, [a.text[:200] for a in answers]
    expected = encoder.encode_documents(texts)
    for answer in answers:
        _assert_same([row["embedding"] for row in answer.json()["data"]], expected)
    assert "Shutting down" in out


def test_a_model_that_fails_to_load_exits_1_with_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    port = str(_free_port())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "e5_integrations.cli",
            "serve",
            "--model",
            str(missing),
            "--device",
            "cpu",
            "--port",
            port,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "could not load the model" in result.stderr and str(missing) in result.stderr


def test_served_recipe_applies_its_templates_on_both_sides(tiny_model_dir: Path) -> None:
    """``e5 serve --recipe prompteol`` embeds exactly like ``E5Encoder(recipe="prompteol")``:
    its document template applies to documents too, and token ids are refused with the reason."""
    from e5_integrations import E5Encoder

    local = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32", recipe="prompteol")
    running = Server(tiny_model_dir, "--recipe", "prompteol")
    try:
        with httpx.Client(base_url=running.url, timeout=120, headers=_headers()) as client:
            info = client.get("/info").json()
            documents = client.post("/v1/embeddings", json={"input": DOCUMENTS}).json()
            queries = client.post(
                "/v1/embeddings", json={"input": QUERIES, "input_type": "query", "task": "NQ"}
            ).json()
            ids = client.post("/v1/embeddings", json={"input": [[1, 2, 3]]})
    finally:
        running.stop()
    assert info["recipe"]["name"] == "prompteol"
    _assert_same([row["embedding"] for row in documents["data"]], local.encode_documents(DOCUMENTS))
    _assert_same([row["embedding"] for row in queries["data"]], local.encode_queries(QUERIES, task="NQ"))
    assert ids.status_code == 400 and "prompteol" in ids.text
