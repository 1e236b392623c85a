"""RetryPolicy: a time budget with capped exponential back-off, what is retried, and the
final StoreUnavailableError (on a fake clock: no real sleeping)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from e5_integrations import ConfigurationError, StoreUnavailableError
from e5_integrations._errors import cli_front
from e5_integrations.ingest import DEFAULT_RETRY_SECONDS, _retry
from e5_integrations.ingest._retry import RetryPolicy, call_with_retry


class FakeClock:
    """``_retry``'s clock and sleep: sleeping advances the clock; each call costs ``call_cost`` s."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_retry, "_clock", fake.clock)
    monkeypatch.setattr(_retry, "_sleep", fake.sleep)
    return fake


def _flaky(
    failures: int, exc: BaseException, clock: FakeClock | None = None, cost: float = 0.0
) -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if clock is not None:
            clock.now += cost
        if len(calls) <= failures:
            raise exc
        return "ok"

    return fn, calls


def test_default_budget_is_patient() -> None:
    assert DEFAULT_RETRY_SECONDS >= 30
    assert RetryPolicy().seconds == DEFAULT_RETRY_SECONDS


def test_retries_until_success_and_counts_the_wait(clock: FakeClock) -> None:
    policy = RetryPolicy(10, base_delay=0.5)
    fn, calls = _flaky(3, ConnectionRefusedError("refused"))
    assert policy.call(fn, what="X") == "ok"
    assert len(calls) == 4
    assert clock.sleeps == pytest.approx([0.5, 1.0, 2.0])
    assert policy.waited == pytest.approx(3.5)


def test_an_outage_shorter_than_the_budget_is_ridden_out(clock: FakeClock) -> None:
    # 15 s of refusals (a restart) against the default budget: the call succeeds.
    fn, _ = _flaky(99, ConnectionRefusedError("refused"))

    def back_after_15_s() -> str:
        return "ok" if clock.now >= 1015.0 else fn()

    assert RetryPolicy().call(back_after_15_s, what="X") == "ok"
    assert max(clock.sleeps) <= _retry.MAX_DELAY


def test_gives_up_when_the_budget_is_spent_naming_the_flag(clock: FakeClock) -> None:
    fn, _ = _flaky(999, TimeoutError("timed out"), clock, cost=1.0)
    with pytest.raises(StoreUnavailableError) as info:
        RetryPolicy(20).call(fn, what="Chroma at http://h:1")
    message = str(info.value)
    assert "Chroma at http://h:1" in message and "timed out" in message
    assert "retry_seconds=" in message  # from Python the parameter, from the e5 command the flag
    assert 19 <= clock.now - 1000.0 <= 21  # the budget, not a count of attempts
    assert isinstance(info.value.__cause__, TimeoutError)
    assert isinstance(info.value, ConnectionError)
    fn, _ = _flaky(999, TimeoutError("timed out"), clock, cost=1.0)
    with cli_front(), pytest.raises(StoreUnavailableError, match="wait longer for it with --retry-seconds"):
        RetryPolicy(5).call(fn, what="Chroma at http://h:1")


def test_zero_seconds_means_one_attempt(clock: FakeClock) -> None:
    fn, calls = _flaky(1, ConnectionRefusedError("refused"))
    with pytest.raises(StoreUnavailableError):
        call_with_retry(fn, what="X", retry_seconds=0)
    assert len(calls) == 1 and clock.sleeps == []


def test_message_is_redacted(clock: FakeClock) -> None:
    fn, _ = _flaky(99, ConnectionRefusedError("refused by http://admin:s3cret@h:1, key K3Y-42"))
    with pytest.raises(StoreUnavailableError) as info:
        RetryPolicy(1).call(fn, what="Milvus at http://admin:s3cret@h:1", secrets=["K3Y-42"])
    assert "s3cret" not in str(info.value) and "K3Y-42" not in str(info.value)
    assert "admin:***@h:1" in str(info.value)


def test_other_errors_are_not_retried(clock: FakeClock) -> None:
    fn, calls = _flaky(1, ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        call_with_retry(fn, what="X", retry_on=(ConnectionError,))
    assert len(calls) == 1 and clock.sleeps == []


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ConfigurationError, match="retry_seconds"):
        RetryPolicy(-1)
    with pytest.raises(ConfigurationError, match="base_delay"):
        RetryPolicy(1, base_delay=-1)
