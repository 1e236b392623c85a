"""Prometheus metrics of one server process (a registry of its own, so apps never collide)."""

from __future__ import annotations

__all__ = ["ServerMetrics"]

_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
_TOKEN_BUCKETS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


class ServerMetrics:
    """The counters, gauges and histograms ``/metrics`` exposes.

    Names (all prefixed ``e5_``): ``requests_total{route,status}``, ``request_duration_seconds``,
    ``queue_tokens``, ``queue_requests``, ``forward_passes_total``, ``embedded_inputs_total``,
    ``batch_size`` (sequences per forward pass), ``batch_tokens`` (padded tokens per forward
    pass), ``queue_duration_seconds``, ``tokenize_duration_seconds``, ``inference_duration_seconds``.
    """

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:  # pragma: no cover - the [server] extra installs it
            raise ImportError(
                "the e5 server needs prometheus-client; install it with: pip install 'e5-integrations[server]'"
            ) from exc
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "e5_requests", "HTTP requests by route and status code", ["route", "status"], registry=registry
        )
        self.request_duration = Histogram(
            "e5_request_duration_seconds",
            "Time from request to response",
            ["route"],
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "e5_requests_in_progress", "Requests received and not answered yet", registry=registry
        )
        self.queue_tokens = Gauge(
            "e5_queue_tokens", "Tokens accepted and not embedded yet", registry=registry
        )
        self.queue_requests = Gauge(
            "e5_queue_requests", "Requests accepted and not answered yet", registry=registry
        )
        self.forward_passes = Counter(
            "e5_forward_passes", "Forward passes run by the model", registry=registry
        )
        self.embedded_inputs = Counter("e5_embedded_inputs", "Sequences embedded", registry=registry)
        self.batch_size = Histogram(
            "e5_batch_size", "Sequences per forward pass", buckets=_SIZE_BUCKETS, registry=registry
        )
        self.batch_tokens = Histogram(
            "e5_batch_tokens", "Padded tokens per forward pass", buckets=_TOKEN_BUCKETS, registry=registry
        )
        self.queue_duration = Histogram(
            "e5_queue_duration_seconds",
            "Time a request waits before its first forward pass",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.tokenize_duration = Histogram(
            "e5_tokenize_duration_seconds",
            "Time spent tokenizing one request",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "e5_inference_duration_seconds",
            "Time of one forward pass (one batch)",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.request_duration.labels(route=route).observe(seconds)
