"""Prometheus exposition: the plain counters turned into text format 0.0.4 at scrape time.

The data plane never touches a Prometheus collector (a labelled ``Counter.inc``
costs about 5 us); each scrape builds a fresh aioprometheus ``Registry`` from
``RequestCounters``, ``Stats`` and the connection pools and renders it. A fresh
registry per scrape also drops gauges of things that are gone.

Two things aioprometheus 23.12 leaves to us:
- it writes label values as given, so they are escaped here (``\\``, ``"``,
  newline) before they reach it;
- its ``Histogram`` only takes single observations, so the latency histogram is
  filled by handing it ``aioprometheus.histogram.Histogram`` values whose
  cumulative buckets, count and sum are set from our counters (the public
  attributes its text formatter reads).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from aioprometheus import Counter, Gauge, Histogram, Registry, render
from aioprometheus import histogram as aio_histogram

import proxy
from proxy.observe.counters import BOUNDS, RequestCounters, Snapshot

if TYPE_CHECKING:
    from proxy.http.pool import PoolRegistry
    from proxy.observe.stats import Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Process-wide Stats attributes exposed as plain counters: (metric, help, attribute).
_STATS_TOTALS = (
    ("graylane_upstream_timeouts_total", "Upstream timeouts (connect or response).", "upstream_timeouts"),
    ("graylane_upstream_retries_total", "Requests sent upstream again.", "retries"),
    ("graylane_pool_hits_total", "Upstream requests on a pooled connection.", "pool_hits"),
    ("graylane_pool_misses_total", "Upstream requests that opened a connection.", "pool_misses"),
    (
        "graylane_connections_evicted_total",
        "Idle client connections closed to make room at the connection cap.",
        "connections_evicted",
    ),
    (
        "graylane_connection_cap_reached_total",
        "Times the client connection cap was reached.",
        "connection_cap_reached",
    ),
)

# What ``render_metrics`` accepts in ``extra`` (values the caller knows and this module cannot
# see): (key, kind, metric, help). A metric is left out when its key is absent.
_EXTRAS = (
    ("client_connections", Gauge, "graylane_client_connections", "Open client connections."),
    (
        "mirror_dropped",
        Counter,
        "graylane_mirror_dropped_total",
        "Mirror copies not sent because too many were pending.",
    ),
)
EXTRA_KEYS = frozenset(key for key, *_ in _EXTRAS)


# (name, help, label names, {label values: count}): a counter family from outside this module.
Family = tuple[str, str, tuple[str, ...], Mapping[tuple[Any, ...], int]]


def escape_label(value: str) -> str:
    """A label value as the text format wants it inside double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    counters: RequestCounters | Snapshot,
    stats: Stats,
    pools: PoolRegistry | tuple[int, int] | None,
    extra: Mapping[str, int] | None = None,
    families: Sequence[Family] = (),
) -> bytes:
    """The whole /metrics body (serve it with ``CONTENT_TYPE``).

    ``counters`` may also be a ``Snapshot`` (e.g. merged from worker processes), and
    ``pools`` the (active, idle) upstream connection counts summed over workers.
    ``extra``: ``client_connections`` (open client connections, a gauge) and
    ``mirror_dropped`` (mirror copies dropped, a counter); each is left out when absent.
    ``families``: more counters from other parts (rollouts, health), each
    ``(name, help, label names, {label values: count})``.
    """
    extra = dict(extra or {})
    unknown = extra.keys() - EXTRA_KEYS
    if unknown:
        raise ValueError(f"unknown extra metrics: {sorted(unknown)}")
    snapshot = counters.snapshot() if isinstance(counters, RequestCounters) else counters
    registry = Registry()
    _requests(registry, snapshot)
    _upstream(registry, snapshot, stats, pools)
    _process(registry, stats, extra)
    for name, doc, labels, values in families:
        family = Counter(name, doc, registry=registry)
        for key, count in sorted(values.items()):
            family.set({label: escape_label(str(v)) for label, v in zip(labels, key, strict=True)}, count)
    content, _ = render(registry, [])  # no Accept header: always the text format
    return content


def _requests(registry: Registry, snapshot: Snapshot) -> None:
    requests = Counter("graylane_requests_total", "Requests answered, by status code.", registry=registry)
    duration = Histogram(
        "graylane_request_duration_seconds",
        "Time from the request head to the last response byte.",
        registry=registry,
        buckets=BOUNDS,
    )
    bytes_in = Counter(
        "graylane_request_bytes_total", "Request body bytes received from clients.", registry=registry
    )
    bytes_out = Counter(
        "graylane_response_bytes_total",
        "Response bytes sent to clients (head and body, as written).",
        registry=registry,
    )
    for (route, service, version), totals in zip(snapshot.keys, snapshot.slots, strict=True):
        labels = {
            "route": escape_label(route),
            "service": escape_label(service),
            "version": escape_label(version),
        }
        for status, count in sorted(totals.codes.items()):
            requests.set({**labels, "code": str(status)}, count)
        histogram = aio_histogram.Histogram(*BOUNDS)
        for bound, cumulative in zip(histogram.buckets, accumulate(totals.buckets), strict=True):
            histogram.buckets[bound] = cumulative
        histogram.observations = totals.requests
        histogram.sum = totals.seconds
        duration.set_value(labels, histogram)
        bytes_in.set(labels, totals.bytes_in)
        bytes_out.set(labels, totals.bytes_out)


def _upstream(
    registry: Registry, snapshot: Snapshot, stats: Stats, pools: PoolRegistry | tuple[int, int] | None
) -> None:
    connect_errors = Counter(
        "graylane_upstream_connect_errors_total",
        "Failed connects to an upstream endpoint (refused, unreachable, timed out).",
        registry=registry,
    )
    for (service, version, endpoint), count in sorted(snapshot.connect_errors.items()):
        labels = {"service": service, "version": version, "endpoint": endpoint}
        connect_errors.set({name: escape_label(value) for name, value in labels.items()}, count)
    for name, doc, attribute in _STATS_TOTALS:
        Counter(name, doc, registry=registry).set({}, getattr(stats, attribute))
    if pools is not None:
        connections = Gauge(
            "graylane_upstream_connections", "Upstream connections by state.", registry=registry
        )
        if isinstance(pools, tuple):
            active, idle = pools
        else:
            active = sum(pool.active for pool in pools.pools.values())
            idle = sum(len(pool.idle) for pool in pools.pools.values())
        connections.set({"state": "active"}, active)
        connections.set({"state": "idle"}, idle)


def _process(registry: Registry, stats: Stats, extra: Mapping[str, int]) -> None:
    rejected = Counter(
        "graylane_rejected_requests_total",
        "Requests refused before routing (malformed, too large, too slow), by reason.",
        registry=registry,
    )
    for reason, count in sorted(stats.rejected_by_reason.items()):
        rejected.set({"reason": escape_label(reason)}, count)
    errors = Counter("graylane_errors_total", "Errors, by access log flag.", registry=registry)
    for flag, count in sorted(stats.errors_by_flag.items()):
        errors.set({"flag": escape_label(flag)}, count)
    reloads = Counter("graylane_config_reloads_total", "Config reloads, by result.", registry=registry)
    reloads.set({"result": "ok"}, stats.reloads_ok)
    reloads.set({"result": "failed"}, stats.reloads_failed)
    for key, kind, name, doc in _EXTRAS:
        if key in extra:
            kind(name, doc, registry=registry).set({}, extra[key])
    build = Gauge("graylane_build_info", "graylane build; the value is always 1.", registry=registry)
    build.set({"version": escape_label(proxy.__version__), "python": platform.python_version()}, 1)
