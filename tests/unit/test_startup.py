"""The test fixtures' patient server start (tests/_startup.py) retries, then reports evidence."""

from __future__ import annotations

import pytest

from tests._startup import StartFailed, start_with_retries


def test_a_failed_start_is_retried_until_one_succeeds() -> None:
    calls: list[int] = []
    lines: list[str] = []

    def start(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 3:
            raise StartFailed(f"slow raylet {attempt}")
        return "up"

    assert start_with_retries("a server", start, attempts=3, pause=0, log=lines.append) == "up"
    assert calls == [1, 2, 3]
    assert len(lines) == 2 and "attempt 1/3" in lines[0] and "slow raylet 1" in lines[0]


def test_the_last_failure_carries_every_reason_and_the_logs() -> None:
    def start(attempt: int) -> None:
        raise StartFailed(f"timed out during startup ({attempt})", diagnostics=f"raylet.out tail {attempt}")

    with pytest.raises(RuntimeError) as info:
        start_with_retries("a local Ray instance", start, attempts=2, pause=0, log=lambda _: None)
    message = str(info.value)
    assert "could not start a local Ray instance in 2 attempts" in message
    assert "timed out during startup (1)" in message and "timed out during startup (2)" in message
    assert "raylet.out tail 2" in message
