"""Prometheus metrics, in a registry of the appliance's own (no globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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

    def watch_model_servers(self, states: Callable[[], list[Any]]) -> None:
        """Each model server's state (``llm.ollama_pool.ServerState``), read when scraped."""
        self.registry.register(_ModelServers(states))

    def watch_database_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        """The database pool's connections and its line (psycopg_pool's own counts), read when scraped."""
        self.registry.register(_DatabasePool(stats))

    def watch_turn_lane(self, counts: Callable[[], dict[str, int]]) -> None:
        """The turn lane's places (``pacing.Lane.counts``), read when scraped."""
        self.registry.register(_TurnLane(counts))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ModelServers(Collector):
    def __init__(self, states: Callable[[], list[Any]]) -> None:
        self.states = states

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("appliance_model_server_up", "1 while the model server is in use, 0 while taken out.",
                               labels=["server"])  # fmt: skip
        in_flight = GaugeMetricFamily("appliance_model_server_in_flight", "Model calls on the server now.",
                                      labels=["server"])  # fmt: skip
        calls = CounterMetricFamily("appliance_model_server_calls", "Model requests given to the server.",
                                    labels=["server"])  # fmt: skip
        failures = CounterMetricFamily("appliance_model_server_failures", "Times the server was taken out.",
                                       labels=["server"])  # fmt: skip
        for state in self.states():
            up.add_metric([state.url], 1 if state.up else 0)
            in_flight.add_metric([state.url], state.in_flight)
            calls.add_metric([state.url], state.calls)
            failures.add_metric([state.url], state.failures)
        yield from (up, in_flight, calls, failures)


class _DatabasePool(Collector):
    """A busy database shows here as a line that moves: waits grow, errors do not."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self.stats()
        connections = GaugeMetricFamily("appliance_db_pool_connections", "Pooled database connections, open and idle.",
                                        labels=["state"])  # fmt: skip
        connections.add_metric(["open"], stats.get("pool_size", 0))
        connections.add_metric(["idle"], stats.get("pool_available", 0))
        yield connections
        yield GaugeMetricFamily("appliance_db_pool_waiting",
                                "Requests in line for a connection now (one that gave up leaves at the next return).",
                                value=stats.get("requests_waiting", 0))  # fmt: skip
        yield CounterMetricFamily("appliance_db_pool_waits", "Requests that had to wait in line.",
                                  value=stats.get("requests_queued", 0))  # fmt: skip
        yield CounterMetricFamily("appliance_db_pool_wait_seconds", "Time requests spent in line, summed.",
                                  value=stats.get("requests_wait_ms", 0) / 1000)  # fmt: skip
        yield CounterMetricFamily("appliance_db_pool_errors", "Requests that got no connection (timed out, gave up).",
                                  value=stats.get("requests_errors", 0))  # fmt: skip


class _TurnLane(Collector):
    """A flood of turns shows here: the line grows while the turns at work stay at the lane's width."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Any]:
        counts = self.counts()
        yield GaugeMetricFamily("appliance_turns_at_work", "Turns holding a place in the lane now.",
                                value=counts["at_work"])  # fmt: skip
        yield GaugeMetricFamily("appliance_turns_waiting", "Turns in line for the lane now.",
                                value=counts["waiting"])  # fmt: skip
