"""cdp_bridge's Prometheus figures (SPEC section 12), counted where things happen.

Each instrument is made once per process, in :data:`REGISTRY` (not the client's global
one, so a host's own metrics and ours never clash by name). Under gunicorn,
``PROMETHEUS_MULTIPROC_DIR`` (set by the shipped ``gunicorn.conf.py``) makes every
worker write its figures to files there, and ``GET /cdp/metrics`` sums them; that is
``prometheus_client``'s multiprocess mode, chosen by the client when it is imported.

What is read from the database (the queue's depth and age) is not counted here: it is
read at each scrape by :class:`QueueCollector`, so every host reports the same queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

#: The registry of this process's own figures.
REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES_RECEIVED = Counter("cdp_deliveries_received", "Webhook deliveries recorded (repeats excluded)",
                              ["activation"], registry=REGISTRY)
DELIVERIES_APPLIED = Counter("cdp_deliveries_applied", "Deliveries applied to the segment store, in the request or by a"
                             " worker", ["activation"], registry=REGISTRY)
DELIVERIES_FAILED = Counter("cdp_deliveries_failed", "Deliveries given up after their last try", ["activation"],
                            registry=REGISTRY)
REJECTED_IDS = Counter("cdp_rejected_ids", "Ids of deliveries refused as invalid (the rest of each delivery is kept)",
                       ["activation"], registry=REGISTRY)
TRACKING_EVENTS = Counter("cdp_tracking_events", "Server-side tracking events by outcome: queued, sent, dropped (queue"
                          " full or not sent before exit), failed (Raptor refused, or could not be reached)",
                          ["outcome"], registry=REGISTRY)
MEMBERSHIP_API_CALLS = Counter("cdp_membership_api_calls", "Calls to the CDP API for visitor segments, by outcome",
                               ["outcome"], registry=REGISTRY)
RECOMMENDATIONS_API_CALLS = Counter("cdp_recommendations_api_calls", "Calls to the Recommendations API, by outcome",
                                    ["outcome"], registry=REGISTRY)
QUEUE_CLAIMS = Counter("cdp_queue_claims", "Rows claimed by a worker (a try each), by queue: deliveries, buys",
                       ["queue"], registry=REGISTRY)
QUEUE_RETRIES = Counter("cdp_queue_retries", "Failed tries whose row is due again after its backoff, by queue",
                        ["queue"], registry=REGISTRY)
QUEUE_GIVEN_UP = Counter("cdp_queue_given_up", "Rows given up after their last try (or refused for good), by queue",
                         ["queue"], registry=REGISTRY)
QUEUE_TAKEOVERS = Counter("cdp_queue_takeovers", "Rows taken over from a worker whose lease ended, by queue",
                          ["queue"], registry=REGISTRY)
ERASURE_REQUESTS = Counter("cdp_erasure_requests", "Erasure requests (cdp.forget) by outcome: made, accepted (Raptor"
                           " answered 2xx), retried, given_up", ["outcome"], registry=REGISTRY)
RECONCILE_RUNS = Counter("cdp_reconcile_runs", "Reconciles of a segment group with the CDP API, by outcome: ok, failed"
                         " (any segment failed)", ["outcome"], registry=REGISTRY)
RECONCILE_CHANGES = Counter("cdp_reconcile_changes", "Members a reconcile changed, by change: added, removed,"
                            " unchanged", ["change"], registry=REGISTRY)
RATE_LIMITED = Counter("cdp_rate_limited", "Requests answered 429 by a rate limit", ["endpoint"], registry=REGISTRY)
WEBHOOK_SECONDS = Histogram("cdp_webhook_duration_seconds", "Time to answer POST /cdp/webhook", registry=REGISTRY)
DELIVERY_APPLY_SECONDS = Histogram("cdp_delivery_apply_seconds", "Time to apply one delivery", registry=REGISTRY)
MEMBERSHIP_API_SECONDS = Histogram("cdp_membership_api_seconds", "Time a call to the CDP API took", registry=REGISTRY)
#: 1 while a client's circuit breaker pauses its calls; under gunicorn, the most of the live workers.
BREAKER_OPEN = Gauge("cdp_breaker_open", "1 while calls to an API are paused by its circuit breaker", ["client"],
                     registry=REGISTRY, multiprocess_mode="livemax")

def multiprocess_dir() -> str | None:
    """Where gunicorn's workers write their figures, when they do."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class QueueCollector(Collector):
    """The delivery queue's depth and oldest age, read from the database at each scrape.

    ``read`` returns (queued deliveries, when the oldest was received) or raises; a
    database that cannot answer leaves both gauges out of this scrape (alert on their
    absence) rather than failing the page.
    """

    def __init__(self, read: Callable[[], tuple[int, datetime | None]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        try:
            queued, oldest = self._read()
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database did
            return
        age = 0.0
        if oldest is not None:
            received = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - received).total_seconds())
        yield GaugeMetricFamily("cdp_queue_depth", "Deliveries queued for a worker", value=queued)
        yield GaugeMetricFamily("cdp_queue_oldest_age_seconds", "Age of the oldest queued delivery (0 when none)",
                                value=age)


class _Forward(Collector):
    """Another registry's figures, as a collector (a registry takes collectors, not registries)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def scrape_registry(queue: QueueCollector, multiprocess_path: str | None) -> CollectorRegistry:
    """What one scrape reads: every gunicorn worker's figures summed from
    ``multiprocess_path`` when given, else this process's own; and the queue's."""
    registry = CollectorRegistry()
    if multiprocess_path is not None:
        MultiProcessCollector(registry, path=multiprocess_path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(queue)
    return registry


def exposition(queue: QueueCollector) -> bytes:
    """The Prometheus text of a scrape of this process (all its siblings' under gunicorn)."""
    return generate_latest(scrape_registry(queue, multiprocess_dir()))
