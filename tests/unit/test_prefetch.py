"""The pipeline's chunking thread: order, errors and early stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from e5_integrations.ingest._pipeline import _Prefetch


def test_items_arrive_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def produce() -> Iterator[int]:
        for item in range(50):
            threads.add(threading.current_thread().name)
            yield item

    assert list(_Prefetch(produce())) == list(range(50))
    assert threads == {"e5-chunk"}


def test_an_error_in_the_generator_reaches_the_consumer_after_the_items_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad record")

    got = []
    with pytest.raises(ValueError, match="bad record"):
        for item in _Prefetch(produce()):
            got.append(item)
    assert got == [1, 2]


def test_close_stops_a_producer_that_is_ahead() -> None:
    produced = []

    def produce() -> Iterator[int]:
        for item in range(10_000):
            produced.append(item)
            yield item

    prefetch = _Prefetch(produce(), depth=1)
    assert next(prefetch) == 0
    prefetch.close()
    assert len(produced) <= 3  # one consumed, one queued, one waiting to be queued
