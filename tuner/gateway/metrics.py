"""The gateway's Prometheus metrics, in a registry of its own (several apps per process in
tests must not collide in the global one)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MISS_SLACK_S = 0.05  # a response later than deadline + this is a deadline miss


class GatewayMetrics:
    """Counters and histograms named ``latts_gateway_*``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, n_branches: int) -> None:
        self.registry = CollectorRegistry()
        self.requests = self._counter("requests", "Requests by endpoint and HTTP status",
                                      ["endpoint", "status"])
        self.latency = Histogram(
            "latts_gateway_request_duration_seconds", "Arrival to response, seconds",
            ["endpoint"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.deadline_cuts = self._counter(
            "deadline_cuts", "Requests answered at the deadline with branches unfinished")
        self.deadline_misses = self._counter(
            "deadline_misses", f"Responses later than the deadline + {MISS_SLACK_S} s")
        self.early_stops = self._counter(
            "early_stops", "Requests the vote rule decided before every branch finished")
        self.branches_started = self._counter("branches_started", "Branches requested upstream")
        self.branches_finished = self._counter("branches_finished", "Branches that finished")
        self.branches_aborted = self._counter("branches_aborted", "Branches cut (deadline or "
                                              "early stop) by closing the upstream request")
        self.vote_margin = Histogram(
            "latts_gateway_vote_margin", "Votes for the winner minus the runner-up's",
            buckets=tuple(range(n_branches + 1)), registry=self.registry)
        self.upstream_errors = self._counter("upstream_errors", "Failed upstream requests",
                                             ["code"])
        self.in_flight = Gauge("latts_gateway_requests_running", "Requests holding a slot",
                               registry=self.registry)
        self.waiting = Gauge("latts_gateway_requests_waiting", "Requests waiting for a slot",
                             registry=self.registry)

    def _counter(self, name: str, help_text: str, labels: list[str] | None = None) -> Counter:
        return Counter(f"latts_gateway_{name}", help_text, labels or [], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
