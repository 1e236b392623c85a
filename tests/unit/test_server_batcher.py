"""The dynamic batcher and request parsing of ``e5 serve``, in process (no HTTP): many callers
share forward passes and each gets exactly its own rows; the queue bound rejects with a delay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pytest

if TYPE_CHECKING:
    from starlette.testclient import TestClient

    from e5_integrations import E5Encoder
    from e5_integrations.server._batcher import DynamicBatcher

pytest.importorskip("prometheus_client")


def _wait_healthy(client: TestClient, seconds: float = 180) -> None:
    """Poll ``/health`` until the model is loaded (patiently: a loaded CI machine is slow)."""
    deadline = time.monotonic() + seconds
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.1)


def _batcher(encoder: E5Encoder, max_queue_tokens: int = 1_000_000) -> DynamicBatcher:
    from e5_integrations.server._batcher import DynamicBatcher
    from e5_integrations.server._metrics import ServerMetrics

    return DynamicBatcher(encoder, max_queue_tokens, ServerMetrics())


def test_concurrent_callers_get_their_own_rows_in_shared_passes(encoder: E5Encoder) -> None:
    batcher = _batcher(encoder)
    requests = [
        [f"caller {i} text {j} " + "word " * ((i * 7 + j) % 13) for j in range(i % 3 + 1)] for i in range(40)
    ]
    ids = [encoder.tokenize(texts) for texts in requests]

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.submit(row) for row in ids))

    try:
        results = asyncio.run(run())
        for texts, got in zip(requests, results, strict=False):
            expected = encoder.encode_documents(texts)
            assert got.shape == expected.shape
            assert np.allclose(got, expected, atol=1e-5)
        passes = batcher.metrics.forward_passes._value.get()
        assert 1 <= passes < len(requests) / 4, passes
        assert batcher.queued_tokens == 0
    finally:
        batcher.close()


def test_queue_bound_raises_overloaded_with_a_retry_delay(encoder: E5Encoder) -> None:
    from e5_integrations.server._batcher import Overloaded

    ids = encoder.tokenize(["a text of some length " * 20] * 4)
    tokens = sum(len(row) for row in ids)
    batcher = _batcher(encoder, max_queue_tokens=tokens + 1)

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.submit(ids) for _ in range(3)), return_exceptions=True)

    try:
        outcomes = asyncio.run(run())
        rejected = [o for o in outcomes if isinstance(o, Overloaded)]
        assert isinstance(outcomes[0], np.ndarray) and len(rejected) == 2
        assert rejected[0].retry_after >= 1 and "--max-queue-tokens" in str(rejected[0])
    finally:
        batcher.close()


def test_close_embeds_what_is_queued(encoder: E5Encoder) -> None:
    batcher = _batcher(encoder)
    ids = encoder.tokenize(["drain me"] * 3)

    async def run() -> np.ndarray:
        pending = batcher.enqueue(ids)
        await asyncio.to_thread(batcher.close)
        return await pending

    assert asyncio.run(run()).shape == (3, encoder.dimension)
    with pytest.raises(RuntimeError, match="shutting down"):
        asyncio.run(batcher.submit(ids))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["ok", ""], "input[1] is empty or whitespace-only"),
        (["ok", None], "input[1] is NoneType"),
        ([], "empty list"),
        ({"text": "x"}, "must be a string or a list"),
        ([[1, 2], "x"], "input[1] is not a list of token ids"),
    ],
)
def test_bad_inputs_are_422_naming_the_index(value: object, message: str) -> None:
    from e5_integrations.server._app import _HTTPError, _parse_inputs

    with pytest.raises(_HTTPError) as caught:
        _parse_inputs(value, "input", 100)
    assert caught.value.status == 422 and message in caught.value.message


def test_token_ids_and_strings_parse() -> None:
    from e5_integrations.server._app import _HTTPError, _parse_inputs

    assert _parse_inputs("one", "input", 10) == (["one"], False)
    assert _parse_inputs([1, 2, 3], "input", 10) == ([[1, 2, 3]], True)
    assert _parse_inputs([[1], [2, 3]], "input", 10) == ([[1], [2, 3]], True)
    with pytest.raises(_HTTPError, match="--max-inputs") as caught:
        _parse_inputs(["x"] * 11, "input", 10)
    assert caught.value.status == 413


def test_client_refuses_a_negative_retry_count() -> None:
    """``max_retries=-1`` made no attempt and then failed on the missing answer (found by mypy)."""
    from e5_integrations import ConfigurationError
    from e5_integrations.server import RemoteEncoder

    with pytest.raises(ConfigurationError, match=r"max_retries=-1 is negative"):
        RemoteEncoder("http://127.0.0.1:9", max_retries=-1)
    assert RemoteEncoder("http://127.0.0.1:9", max_retries=0).max_retries == 0


def test_client_splits_requests_within_the_server_limits() -> None:
    from e5_integrations.server import RemoteEncoder

    client = RemoteEncoder("http://127.0.0.1:9")
    texts = ["x" * 100] * 25
    slices = client._slices(texts, {"max_inputs": 10, "max_payload_bytes": 3000})
    assert [len(s) for s in slices] == [9, 9, 7] and [t for s in slices for t in s] == texts
    assert client._slices(texts, {"max_inputs": 10, "max_payload_bytes": 10**6}) == [
        texts[:10],
        texts[10:20],
        texts[20:],
    ]


class _RecordingEncoder:
    """A fake encoder: one row per token, a pass records which request each row came from
    (the first token id is the request's tag) and may run a hook (to enqueue more work)."""

    dimension = 2
    devices = ("cpu",)

    def __init__(self, batch_tokens: int) -> None:
        import threading

        self.batch_tokens = batch_tokens
        self.passes: list[set[int]] = []
        self.hook: Callable[[int], None] | None = None
        self.entered = threading.Event()  # a pass has started
        self.gate = threading.Event()  # passes may finish
        self.gate.set()
        #: the pass (an attribute, so that a test may wrap it)
        self.encode_token_ids: Callable[..., np.ndarray] = self._encode_token_ids

    def _encode_token_ids(self, rows: list[list[int]], check_vectors: bool = True) -> np.ndarray:
        self.entered.set()
        self.gate.wait(60)
        self.passes.append({row[0] for row in rows})
        if self.hook is not None:
            self.hook(len(self.passes))
        return np.array([[row[0], len(row)] for row in rows], dtype=np.float32)


def _rows(tag: int, count: int, length: int) -> list[list[int]]:
    return [[tag] * length for _ in range(count)]


def test_priority_work_overtakes_queued_bulk_passes() -> None:
    """A query sent while a bulk request's passes are running is embedded in the next pass,
    not after the bulk request's whole plan."""
    from e5_integrations.server._batcher import DynamicBatcher
    from e5_integrations.server._metrics import ServerMetrics

    encoder = _RecordingEncoder(batch_tokens=40)
    batcher = DynamicBatcher(
        encoder, 1_000_000, ServerMetrics(), bulk_slice=1, express=False
    )  # one lane, full passes
    bulk = _rows(1, 12, 20)  # 12 rows of 20 tokens: 6 passes of 2 rows
    query = _rows(2, 1, 5)

    async def run() -> list[np.ndarray]:
        encoder.gate.clear()  # the first bulk pass blocks until the query is queued
        first = batcher.enqueue(bulk)
        await asyncio.to_thread(encoder.entered.wait, 60)  # the first bulk pass is running
        second = batcher.enqueue(query, priority=True)
        encoder.gate.set()
        return list(await asyncio.gather(first, second))

    try:
        got_bulk, got_query = asyncio.run(run())
    finally:
        batcher.close()
    assert got_bulk[:, 0].tolist() == [1] * 12 and got_query[:, 0].tolist() == [2]
    query_pass = next(n for n, tags in enumerate(encoder.passes) if 2 in tags)
    assert query_pass == 1, encoder.passes  # right after the pass that was running
    assert len(encoder.passes) == 7


def test_bulk_work_is_not_starved_by_a_stream_of_queries() -> None:
    """Queries keep arriving (one more after every pass); bulk passes still run, at least one
    in every PRIORITY_STREAK + 1 passes, and the bulk request completes."""
    from e5_integrations.server._batcher import DynamicBatcher
    from e5_integrations.server._metrics import ServerMetrics

    encoder = _RecordingEncoder(batch_tokens=40)
    batcher = DynamicBatcher(
        encoder, 1_000_000, ServerMetrics(), priority_streak=2, bulk_slice=1, express=False
    )
    bulk = _rows(1, 8, 20)  # 4 passes
    futures: list[asyncio.Future[np.ndarray]] = []

    async def run() -> np.ndarray:
        loop = asyncio.get_running_loop()

        async def add_query() -> None:
            futures.append(batcher.enqueue(_rows(2, 1, 5), priority=True))

        def more(count: int) -> None:  # on the worker thread, after each pass
            if count < 40:
                asyncio.run_coroutine_threadsafe(add_query(), loop).result(30)

        encoder.hook = more
        pending = batcher.enqueue(bulk)  # first: from now on, bulk work is always waiting
        await add_query()
        done = await pending
        encoder.hook = None
        await asyncio.gather(*futures)
        return done

    try:
        got = asyncio.run(run())
    finally:
        batcher.close()
    assert got[:, 0].tolist() == [1] * 8
    bulk_passes = [n for n, tags in enumerate(encoder.passes) if 1 in tags]
    assert len(bulk_passes) == 4
    gaps = [b - a for a, b in zip([-1, *bulk_passes], bulk_passes, strict=False)]
    assert max(gaps) <= 3, encoder.passes  # never more than 2 priority rounds in a row
    assert any(2 in tags for tags in encoder.passes[: bulk_passes[-1]])  # queries did go first


def test_bulk_passes_shrink_while_priority_traffic_is_active() -> None:
    """After a query, bulk passes take 1/bulk_slice of the budget (a later query waits for a
    small pass); with no priority traffic they are full passes."""
    from e5_integrations.server._batcher import DynamicBatcher
    from e5_integrations.server._metrics import ServerMetrics

    def bulk_pass_sizes(with_query: bool) -> list[int]:
        encoder = _RecordingEncoder(batch_tokens=80)
        batcher = DynamicBatcher(encoder, 1_000_000, ServerMetrics(), bulk_slice=2, priority_window_s=3600)
        sizes: list[int] = []
        original = encoder.encode_token_ids

        def record(rows, check_vectors=True):
            if rows[0][0] == 1:
                sizes.append(len(rows))
            return original(rows)

        encoder.encode_token_ids = record

        async def run() -> None:
            pending = []
            if with_query:
                pending.append(batcher.enqueue(_rows(2, 1, 5), priority=True))
            pending.append(batcher.enqueue(_rows(1, 8, 20)))
            await asyncio.gather(*pending)

        try:
            asyncio.run(run())
        finally:
            batcher.close()
        return sizes

    assert bulk_pass_sizes(with_query=False) == [4, 4]  # 80-token passes of 20-token rows
    assert bulk_pass_sizes(with_query=True) == [2, 2, 2, 2]  # 40-token passes


def test_the_express_lane_embeds_a_query_while_a_bulk_pass_runs() -> None:
    """A bulk pass is stuck (its rows wait on a gate); a query sent meanwhile is answered
    before that pass ends, by the express lane."""
    import threading

    from e5_integrations.server._batcher import DynamicBatcher
    from e5_integrations.server._metrics import ServerMetrics

    encoder = _RecordingEncoder(batch_tokens=40)
    bulk_gate, bulk_entered = threading.Event(), threading.Event()
    original = encoder.encode_token_ids

    def gated(rows, check_vectors=True):
        if rows[0][0] == 1:  # bulk rows wait; priority rows pass straight through
            bulk_entered.set()
            bulk_gate.wait(60)
        return original(rows)

    encoder.encode_token_ids = gated
    batcher = DynamicBatcher(encoder, 1_000_000, ServerMetrics())

    async def run() -> tuple[bool, np.ndarray]:
        bulk = batcher.enqueue(_rows(1, 4, 20))
        await asyncio.to_thread(bulk_entered.wait, 60)
        query = await asyncio.wait_for(batcher.submit(_rows(2, 1, 5), priority=True), 60)
        still_running = not bulk.done()
        bulk_gate.set()
        await bulk
        return still_running, query

    try:
        still_running, query = asyncio.run(run())
    finally:
        bulk_gate.set()
        batcher.close()
    assert still_running and query[:, 0].tolist() == [2]


def test_a_failing_forward_pass_is_a_counted_500_without_its_traceback(encoder: E5Encoder) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("prometheus_client")
    from starlette.testclient import TestClient

    from e5_integrations.server import create_app

    class Broken:
        """The tiny encoder, with a forward pass that fails (a bug, a device error)."""

        def __getattr__(self, name: str) -> object:
            return getattr(encoder, name)

        def encode_token_ids(self, rows: object, check_vectors: bool = True) -> object:
            raise RuntimeError("secret internals of the failure")

    app = create_app(
        lambda: cast("E5Encoder", Broken())
    )  # a stand-in: every other attribute is the encoder's
    with TestClient(app) as client:
        _wait_healthy(client)
        answer = client.post("/v1/embeddings", json={"input": ["x"]})
        assert answer.status_code == 500
        assert "bug" in answer.json()["error"]["message"] and "secret internals" not in answer.text
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics").text
    assert 'e5_requests_total{route="/v1/embeddings",status="500"} 1.0' in metrics


def test_one_requests_nan_vector_fails_that_request_only(tiny_model_dir: Path) -> None:
    """A request whose input the model turns into NaN (a half-precision overflow) gets an
    InputError naming its own input; the request sharing its forward pass gets its vectors
    (issue 23: no zero or NaN vector leaves silently, and no other client pays for it)."""
    import torch

    from e5_integrations import E5Encoder, InputError
    from e5_integrations._backend import TorchBackend, load_model
    from tests.unit.test_ingest_bad_vectors import _PoisonedBackend

    plain = E5Encoder(str(tiny_model_dir), device="cpu", dtype="fp32")
    token = plain.tokenizer("poison", add_special_tokens=False)["input_ids"][-1]
    real = TorchBackend(load_model(str(tiny_model_dir), torch.device("cpu"), torch.float32), plain.recipe, 2)
    poisoned = E5Encoder(str(tiny_model_dir), backends=[_PoisonedBackend(real, token)], dtype="fp32")
    batcher = _batcher(poisoned)
    good = plain.tokenize(["Paris is the capital of France.", "fine"])
    bad = plain.tokenize(["fine too", "this carries poison"])

    async def run() -> list[object]:
        with batcher._cond:  # both queued before the worker looks: they share one pass
            futures = [batcher.enqueue(good), batcher.enqueue(bad)]
        return await asyncio.gather(*futures, return_exceptions=True)

    try:
        got_good, got_bad = asyncio.run(run())
    finally:
        batcher.close()
    assert batcher.metrics.forward_passes._value.get() == 1  # the two requests shared one pass
    assert isinstance(got_good, np.ndarray) and np.allclose(got_good, plain.encode_token_ids(good), atol=1e-5)
    assert isinstance(got_bad, InputError) and got_bad.index == 1
    assert "input[1] gives a non-finite vector" in str(got_bad) and str(tiny_model_dir) not in str(got_bad)


def test_whitespace_only_inputs_are_422_under_any_recipe(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A sentence-transformers folder that leaves its prompt out of a mean: a whitespace-only
    input would strip to the prompt alone and leave nothing to pool (the reference gives a zero
    vector). The server refuses empty and whitespace-only inputs up front, as ``e5 ingest``
    skips such documents: 422 naming the input, never a zero vector."""
    import json

    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from e5_integrations import E5Encoder, InputError
    from e5_integrations.server import create_app

    folder = tmp_path / "st-model"
    folder.mkdir()
    for item in tiny_model_dir.iterdir():
        (folder / item.name).symlink_to(item)
    prompts = {"query": "Represent this question: ", "document": "Represent this passage: "}
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    (folder / "1_Pooling").mkdir()
    pooling = {"pooling_mode_mean_tokens": True, "include_prompt": False}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    encoder = E5Encoder(str(folder), device="cpu", dtype="fp32")
    with pytest.raises(InputError, match=r"texts\[1\].*no token to pool"):
        encoder.encode_documents(["a passage", "   "])  # what the server is protected from
    with TestClient(create_app(lambda: encoder)) as client:
        _wait_healthy(client)
        for blank in ("", "   ", "\n\t"):
            answer = client.post("/v1/embeddings", json={"input": ["a passage", blank]})
            assert answer.status_code == 422, answer.text
            assert "input[1] is empty or whitespace-only" in answer.json()["error"]["message"]
        assert client.post("/v1/embeddings", json={"input": ["a passage"]}).status_code == 200
