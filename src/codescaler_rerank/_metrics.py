"""Prometheus metrics of the proxy, in a registry of their own per app."""

from __future__ import annotations

from ._deps import require
from .results import RerankResult

STAGES = ("generate", "extract", "score", "select", "total")


class ProxyMetrics:
    """Prometheus metrics of one app, in their own registry."""

    def __init__(self) -> None:
        prom = require("prometheus_client", "server")
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "codescaler_requests", "Chat completion requests by HTTP status", ["status"], registry=self.registry
        )
        self.stage_seconds = prom.Histogram(
            "codescaler_stage_seconds", "Seconds per stage of a reranked request", ["stage"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, float("inf")),
        )
        self.candidates = prom.Counter(
            "codescaler_candidates", "Sampled candidates by extraction validity and reason", ["valid", "reason"],
            registry=self.registry,
        )
        self.batch_requests = prom.Histogram(
            "codescaler_score_batch_requests", "Requests merged into one scoring call", registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, float("inf")),
        )
        self.batch_pairs = prom.Histogram(
            "codescaler_score_batch_pairs", "Programs scored in one scoring call", registry=self.registry,
            buckets=(1, 4, 16, 64, 256, 1024, float("inf")),
        )
        self.in_flight = prom.Gauge(
            "codescaler_in_flight", "Requests being served (until their ranking has stopped)", registry=self.registry
        )
        self.latest = prom.generate_latest
        self.content_type = prom.CONTENT_TYPE_LATEST

    def observe_batch(self, requests: int, pairs: int) -> None:
        self.batch_requests.observe(requests)
        self.batch_pairs.observe(pairs)

    def observe_result(self, result: RerankResult) -> None:
        for stage in STAGES:
            self.stage_seconds.labels(stage).observe(getattr(result.timings, stage))
        for c in result.candidates:
            self.candidates.labels(str(c.valid).lower(), c.reason).inc()
