"""The dynamic batcher and request parsing of ``e5 serve``, in process (no HTTP): many callers
share forward passes and each gets exactly its own rows; the queue bound rejects with a delay."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("prometheus_client")


def _batcher(encoder, max_queue_tokens: int = 1_000_000):
    from e5_integrations.server._batcher import DynamicBatcher
    from e5_integrations.server._metrics import ServerMetrics

    return DynamicBatcher(encoder, max_queue_tokens, ServerMetrics())


def test_concurrent_callers_get_their_own_rows_in_shared_passes(encoder) -> None:
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


def test_queue_bound_raises_overloaded_with_a_retry_delay(encoder) -> None:
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


def test_close_embeds_what_is_queued(encoder) -> None:
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
        (["ok", ""], "input[1] is an empty string"),
        (["ok", None], "input[1] is NoneType"),
        ([], "empty list"),
        ({"text": "x"}, "must be a string or a list"),
        ([[1, 2], "x"], "input[1] is not a list of token ids"),
    ],
)
def test_bad_inputs_are_422_naming_the_index(value, message) -> None:
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
