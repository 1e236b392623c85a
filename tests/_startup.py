"""Starting the servers the tests need, patiently.

CI runs on a busy 2-core machine, where a server that starts in a second when the machine is
quiet can take tens of seconds: a slow start must be waited for, not failed. Every fixture
that starts a server (Chroma, Milvus Lite, Postgres, Ray) waits up to :data:`START_TIMEOUT`
seconds and retries a start that failed outright (a port taken between choosing and binding
it, a start that hit a hard-coded limit of the server's own launcher) a few times, each on a
fresh port or folder, before failing with the server's log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["START_ATTEMPTS", "START_TIMEOUT", "StartFailed", "start_with_retries"]

T = TypeVar("T")

#: Seconds a fixture waits for one server start (``E5_TEST_START_TIMEOUT`` overrides it).
START_TIMEOUT = float(os.environ.get("E5_TEST_START_TIMEOUT", "180"))
#: Starts tried before a fixture gives up (``E5_TEST_START_ATTEMPTS`` overrides it).
START_ATTEMPTS = int(os.environ.get("E5_TEST_START_ATTEMPTS", "3"))


class StartFailed(Exception):
    """One start attempt failed; ``diagnostics`` holds what its logs said."""

    def __init__(self, message: str, diagnostics: str = "") -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


def start_with_retries(
    what: str,
    start: Callable[[int], T],
    attempts: int = START_ATTEMPTS,
    pause: float = 2.0,
    log: Callable[[str], None] | None = None,
) -> T:
    """Call ``start(attempt)`` until it returns, at most ``attempts`` times.

    ``start`` cleans up after itself when it raises. Each failure is reported through ``log``
    (default: stderr, which pytest shows for a failing test and keeps out of a passing run's
    output, and the file ``$E5_TEST_START_LOG`` when set). After the last failure, :class:`RuntimeError` carries every attempt's reason and
    the last attempt's diagnostics, so a flaky start leaves evidence instead of a bare timeout.
    """
    import sys

    def report(line: str) -> None:
        if log is not None:
            log(line)
            return
        print(line, file=sys.stderr)
        if os.environ.get("E5_TEST_START_LOG"):  # a file that outlives pytest's output capture
            with open(os.environ["E5_TEST_START_LOG"], "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    reasons: list[str] = []
    last_diagnostics = ""
    for attempt in range(1, attempts + 1):
        began = time.monotonic()
        try:
            return start(attempt)
        except Exception as exc:
            elapsed = time.monotonic() - began
            reason = f"attempt {attempt}/{attempts} after {elapsed:.1f} s: {type(exc).__name__}: {exc}"
            reasons.append(reason)
            last_diagnostics = getattr(exc, "diagnostics", "") or last_diagnostics
            report(f"[e5 tests] starting {what} failed, {reason}")
            if attempt < attempts:
                time.sleep(pause * attempt)
    detail = "\n".join(reasons)
    raise RuntimeError(f"could not start {what} in {attempts} attempts:\n{detail}\n{last_diagnostics}")
