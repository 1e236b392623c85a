"""One patient back-off for every store: retry a store call for a time budget, then raise
``StoreUnavailableError``.

Every sink wraps each client call that talks to a server in :meth:`RetryPolicy.call`,
passing the exception types that mean "could not reach the store" (connection refused,
a reset, a timeout). Any other exception (a bad request, a schema error) propagates at
once: retrying it would only delay the same failure.

The budget is in seconds, not attempts, and the same for every store: a store that comes
back within :data:`DEFAULT_RETRY_SECONDS` (a restart, a failover) does not abort a long run.
``e5 ingest --retry-seconds`` and the sinks' ``retry_seconds=`` change it.

Store-independent, so it lives in the core; sink authors import it from
``e5_integrations.sinks``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from e5_integrations._errors import ConfigurationError, StoreUnavailableError, option
from e5_integrations._redact import redact
from e5_integrations.ingest._records import DEFAULT_RETRY_SECONDS

__all__ = [
    "BASE_DELAY",
    "DEFAULT_RETRY_SECONDS",
    "MAX_DELAY",
    "RetryPolicy",
    "Unreachable",
    "call_with_retry",
]

T = TypeVar("T")

# the logger of the sinks, whose calls it retries (its name before the policy moved to the core)
_log = logging.getLogger("e5_integrations.sinks._retry")

#: Wait before the second try, in seconds; doubled after each failure.
BASE_DELAY = 0.5
#: No single wait is longer than this, in seconds, so a store that is back is seen soon.
MAX_DELAY = 5.0

# The clock and the sleep, looked up at call time so that unit tests can replace them.
_clock = time.monotonic
_sleep = time.sleep


class Unreachable(ConnectionError):
    """A client error a sink has recognised as "the store could not be reached" (retried)."""


class RetryPolicy:
    """How long a sink keeps retrying an unreachable store, and how long it has waited.

    Args:
        seconds: the budget: how long one call keeps being retried after its first failure
            (0: never retry). The default is :data:`DEFAULT_RETRY_SECONDS`.
        base_delay: wait before the second try; doubled after each failure, capped at
            :data:`MAX_DELAY`.

    Raises:
        ConfigurationError: a negative ``seconds`` or ``base_delay``.
    """

    def __init__(self, seconds: float | None = None, base_delay: float = BASE_DELAY) -> None:
        seconds = DEFAULT_RETRY_SECONDS if seconds is None else float(seconds)
        if not seconds >= 0:
            raise ConfigurationError(
                f"retry_seconds={seconds}; expected a number of seconds >= 0 ({option('retry_seconds')})"
            )
        if not base_delay >= 0:
            raise ConfigurationError(f"base_delay={base_delay}; expected a number of seconds >= 0")
        self.seconds = seconds
        self.base_delay = base_delay
        #: Seconds spent waiting between retries so far, over every call.
        self.waited = 0.0

    def call(
        self,
        fn: Callable[[], T],
        *,
        what: str,
        retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
        secrets: Iterable[str | None] = (),
    ) -> T:
        """Call ``fn()`` until it succeeds, retrying the exceptions in ``retry_on`` with
        exponential back-off for at most ``seconds``.

        Args:
            fn: the store call, with no arguments (wrap it in a ``lambda``).
            what: what is being reached, for messages, e.g. ``"Chroma at http://h:8000"``;
                it is redacted, with ``secrets``, before it is shown.
            retry_on: exception types that mean the store is unreachable.
            secrets: API keys or tokens to mask in messages besides the URI's own.

        Returns:
            what ``fn`` returned.

        Raises:
            StoreUnavailableError: ``fn`` still raised one of ``retry_on`` when the budget
                ran out; chained to the last error, naming ``--retry-seconds``.
        """
        started = _clock()
        delay = self.base_delay
        attempts = 0
        last: BaseException | None = None
        while True:
            attempts += 1
            try:
                return fn()
            except retry_on as exc:
                remaining = started + self.seconds - _clock()
                if remaining <= 0:
                    last = exc
                    break
                wait = min(delay, remaining)
                level = logging.WARNING if attempts == 1 else logging.DEBUG
                if _log.isEnabledFor(level):
                    _log.log(
                        level,
                        "%s",
                        redact(
                            f"{what} is unreachable ({exc}); retrying for up to {remaining:.0f} s "
                            f"(attempt {attempts}, next in {wait:.1f} s)",
                            secrets,
                        ),
                    )
                _sleep(wait)
                self.waited += wait
                delay = min(max(delay * 2, 0.01), MAX_DELAY)
        elapsed = _clock() - started
        message = (
            f"cannot reach {what}: {attempts} attempts over {elapsed:.1f} s failed (last error: {last}); "
            "check that the server is running and the URI is right, or wait longer for it with "
            f"{option('retry_seconds')} (now {self.seconds:g} s)"
        )
        raise StoreUnavailableError(redact(message, secrets)) from last


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    retry_seconds: float | None = None,
    base_delay: float = BASE_DELAY,
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
) -> T:
    """:meth:`RetryPolicy.call` with a one-off policy (see there)."""
    return RetryPolicy(retry_seconds, base_delay).call(fn, what=what, retry_on=retry_on)
