"""Where :class:`RetryPolicy` was before it moved to the core (``e5_integrations.ingest._retry``);
kept so older imports work. Sinks import it from ``e5_integrations.sinks``."""

from e5_integrations.sinks import DEFAULT_RETRY_SECONDS, RetryPolicy, Unreachable

__all__ = ["DEFAULT_RETRY_SECONDS", "RetryPolicy", "Unreachable"]
