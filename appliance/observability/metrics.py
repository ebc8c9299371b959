"""Prometheus metrics, in a registry of the appliance's own (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "appliance_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "appliance_http_request_seconds",
            "Time to the response's first byte.",
            ["method", "route"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.runs = Counter(
            "appliance_runs",
            "Runs by outcome (success, error, cancelled).",
            ["outcome"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "appliance_run_seconds",
            "Time a run held its thread.",
            buckets=_SECONDS,
            registry=self.registry,
        )

    def observe_run(self, outcome: str, seconds: float) -> None:
        self.runs.labels(outcome).inc()
        self.run_seconds.observe(seconds)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
