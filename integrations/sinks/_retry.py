"""Retry a store call with exponential back-off, then raise ``StoreUnavailableError``.

Sinks wrap every client call that talks to a server in :func:`call_with_retry`, passing the
exception types that mean "could not reach the store" (connection refused, timeouts). Any
other exception (a bad request, a schema error) propagates at once: retrying it would only
delay the same failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from e5_integrations._errors import ConfigurationError, StoreUnavailableError, for_front

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_BASE_DELAY", "Unreachable", "backoff_delays", "call_with_retry"]

T = TypeVar("T")

_log = logging.getLogger(__name__)

#: Attempts before giving up (the first call included).
DEFAULT_ATTEMPTS = 5
#: Delay before the second attempt, in seconds; doubled after each failure.
DEFAULT_BASE_DELAY = 0.2
#: No single wait is longer than this, in seconds.
MAX_DELAY = 10.0


class Unreachable(ConnectionError):
    """A client error a sink has recognised as "the store could not be reached" (retried)."""


def backoff_delays(attempts: int, base_delay: float) -> list[float]:
    """The waits between ``attempts`` tries: ``base, 2*base, 4*base, ...`` capped at ``MAX_DELAY``."""
    return [min(base_delay * (2**i), MAX_DELAY) for i in range(max(attempts - 1, 0))]


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
) -> T:
    """Call ``fn()`` until it succeeds, retrying the exceptions in ``retry_on``.

    Args:
        fn: the store call, with no arguments (wrap it in a ``lambda``).
        what: what is being reached, for the error message, e.g. ``"Chroma at http://h:8000"``.
            Never put a password in it.
        attempts: tries in all, at least 1.
        base_delay: wait before the second try, in seconds; doubled after each failure.
        retry_on: exception types that mean the store is unreachable.

    Returns:
        what ``fn`` returned.

    Raises:
        StoreUnavailableError: every attempt raised one of ``retry_on``; chained to the last one.
        ConfigurationError: ``attempts`` < 1 or ``base_delay`` < 0.
    """
    if attempts < 1:
        raise ConfigurationError(f"attempts must be >= 1, got {attempts}")
    if base_delay < 0:
        raise ConfigurationError(f"base_delay must be >= 0 seconds, got {base_delay}")
    delays = backoff_delays(attempts, base_delay)
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return fn()
        except retry_on as exc:
            last = exc
            if attempt < len(delays):
                _log.debug("%s: attempt %d/%d failed (%s); retrying", what, attempt + 1, attempts, exc)
                time.sleep(delays[attempt])
    total = sum(delays)
    raise StoreUnavailableError(
        f"cannot reach {what} after {attempts} attempts over {total:.1f} s "
        f"(last error: {last}); check that the server is running and the URI is right"
        + for_front(", or raise the retry options (retry_attempts=, retry_base_delay=)", "")
    ) from last
