"""call_with_retry: back-off, which errors are retried, and the final StoreUnavailableError."""

from __future__ import annotations

import pytest
from e5_integrations import ConfigurationError, StoreUnavailableError
from e5_integrations.sinks import _retry
from e5_integrations.sinks._retry import backoff_delays, call_with_retry


def _flaky(failures: int, exc: BaseException):
    calls = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "ok"

    return fn, calls


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(_retry.time, "sleep", slept.append)
    return slept


def test_backoff_doubles_and_is_capped() -> None:
    assert backoff_delays(4, 0.2) == pytest.approx([0.2, 0.4, 0.8])
    assert backoff_delays(1, 0.2) == []
    assert max(backoff_delays(20, 1.0)) == _retry.MAX_DELAY


def test_retries_until_success(sleeps: list[float]) -> None:
    fn, calls = _flaky(2, ConnectionRefusedError("refused"))
    assert call_with_retry(fn, what="X", attempts=5, base_delay=0.1) == "ok"
    assert len(calls) == 3
    assert sleeps == pytest.approx([0.1, 0.2])


def test_gives_up_with_store_unavailable_naming_the_target(sleeps: list[float]) -> None:
    fn, calls = _flaky(99, TimeoutError("timed out"))
    expected = r"Chroma at http://h:1 after 3 attempts.*timed out"
    with pytest.raises(StoreUnavailableError, match=expected) as info:
        call_with_retry(fn, what="Chroma at http://h:1", attempts=3, base_delay=0.1)
    assert len(calls) == 3 and len(sleeps) == 2
    assert isinstance(info.value.__cause__, TimeoutError)
    assert isinstance(info.value, ConnectionError)


def test_other_errors_are_not_retried(sleeps: list[float]) -> None:
    fn, calls = _flaky(1, ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        call_with_retry(fn, what="X", retry_on=(ConnectionError,))
    assert len(calls) == 1 and sleeps == []


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ConfigurationError, match="attempts"):
        call_with_retry(lambda: 1, what="X", attempts=0)
    with pytest.raises(ConfigurationError, match="base_delay"):
        call_with_retry(lambda: 1, what="X", base_delay=-1)
