"""The server's Prometheus metrics (prometheus-client), in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "posevit_requests", "HTTP requests by route and status code", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "posevit_request_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "posevit_batch_size", "Images per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.forward_seconds = Histogram(
            "posevit_forward_seconds",
            "Time of one batched forward pass",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("posevit_queue_depth", "Images waiting for a forward pass", registry=self.registry)
        self.images = Counter("posevit_images", "Images classified", registry=self.registry)
        self.abandoned = Counter(
            "posevit_abandoned",
            "Requests whose caller left (timeout, disconnect) before their batch ran",
            registry=self.registry,
        )
        self.rejected = Counter(
            "posevit_rejected", "Requests refused before inference", ["reason"], registry=self.registry
        )
        # The prediction log (serve.prediction_log): what it wrote, what it dropped rather than slow a request.
        self.log_records = Counter(
            "posevit_prediction_log_records", "Prediction-log records in closed files", registry=self.registry
        )
        self.log_dropped = Counter(
            "posevit_prediction_log_dropped",
            "Prediction-log records dropped because the writer's queue was full",
            registry=self.registry,
        )
        self.log_errors = Counter(
            "posevit_prediction_log_errors",
            "Prediction-log files or images that could not be written (kept and retried for files)",
            registry=self.registry,
        )

        # The model served, and how following its alias goes (serve.follow).
        self.model_info = Gauge(
            "posevit_model_info",
            "The model version serving new requests (1), by the alias it was named by and the backend",
            ["version", "alias", "backend"],
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "posevit_model_swaps", "New versions swapped in while serving (serve.follow)", registry=self.registry
        )
        self.model_update_failures = Counter(
            "posevit_model_update_failures",
            "Alias polls or new versions that failed (stage: poll, fetch, load or warm); the old one serves on",
            ["stage"],
            registry=self.registry,
        )

    def show_model(self, version: str, alias: str, backend: str) -> None:
        """posevit_model_info names the version serving now, and only it."""
        self.model_info.clear()
        self.model_info.labels(version, alias, backend).set(1)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.forward_seconds.observe(seconds)
        self.images.inc(size)
