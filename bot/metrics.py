"""Prometheus metrics of one bot process, served at `GET /metrics`.

Each `Metrics` object owns its registry, so tests and several runtimes in one
process never share counters. Components take a `Metrics` and record what
they see; nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Buckets in seconds: acknowledgements are meant to take milliseconds, replies up to the lookup timeout.
ACK_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)
COMMAND_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _PollLag(Collector):
    """Seconds since each assistant's last successful poll, computed when scraped."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.last_success: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("builds_poll_lag_seconds", "Seconds since the last successful poll of an assistant", labels=["assistant"])
        now = self._clock()
        for assistant, moment in sorted(self.last_success.items()):
            family.add_metric([assistant], now - moment)
        yield family


class Metrics:
    """The counters, histograms and gauges of one bot process."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.command_seconds = Histogram(
            "builds_command_seconds", "Time from a command to its reply, by command", ["command"], buckets=COMMAND_BUCKETS, registry=registry
        )
        self.ack_seconds = Histogram("builds_ack_seconds", "Time from a slash command to its acknowledgement", buckets=ACK_BUCKETS, registry=registry)
        self.upstream_requests = Counter(
            "builds_upstream_requests", "Requests to the Autopilot API, by endpoint and status", ["endpoint", "status"], registry=registry
        )
        self.upstream_retries = Counter("builds_upstream_retries", "Retried Autopilot API requests, by reason", ["reason"], registry=registry)
        self.cache_lookups = Counter("builds_cache_lookups", "Lookup cache results: hit, miss or stale", ["result"], registry=registry)
        self.alerts_sent = Counter("builds_alerts_sent", "Alerts Slack accepted, by kind", ["kind"], registry=registry)
        self.alerts_failed = Counter("builds_alerts_failed", "Alert deliveries that failed and wait for a retry, by kind", ["kind"], registry=registry)
        self.outbox_size = Gauge("builds_outbox_size", "Alerts waiting in the outbox", registry=registry)
        self._poll_lag = _PollLag(clock)
        self._clock = clock
        registry.register(self._poll_lag)

    def polled(self, assistant: str) -> None:
        """Record a successful poll of `assistant` now."""
        self._poll_lag.last_success[assistant] = self._clock()

    def upstream(self, url: str, status: int | str) -> None:
        """Count one Autopilot API request by its endpoint (not its identifiers) and status."""
        self.upstream_requests.labels(endpoint=endpoint_of(url), status=str(status)).inc()

    def exposition(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def endpoint_of(url: str) -> str:
    """Return the API endpoint of a URL without its identifiers, such as `model_builds`, to keep labels few."""
    segments = [segment for segment in urlsplit(url).path.split("/") if segment]
    if "ModelBuilds" in segments:
        return "model_build" if segments[-1] != "ModelBuilds" else "model_builds"
    if segments and segments[-1] == "Assistants":
        return "assistants"
    return "assistant" if "Assistants" in segments else "other"
