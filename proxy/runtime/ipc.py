"""What workers tell the supervisor, and how the supervisor adds it up.

Each worker sends a ``WorkerReport`` once a second over its socket pair: length-
prefixed msgspec msgpack frames. The reports carry cumulative counters, so a lost
or late report loses nothing; the supervisor keeps the latest per worker and, when
a worker exits, folds the counters of its last report into one running ``Retired``
total, so that summed counters never go backwards (Prometheus counters must only
grow) and the supervisor's memory stays bounded however often workers restart.
Gauges (open connections, pool connections, endpoint health, JWKS keys) describe
the present and come from live workers only.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from proxy.observe.counters import SlotTotals, Snapshot
from proxy.observe.stats import Stats
from proxy.policy.limits import LimitCounters

FRAME = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024


EndpointKey = tuple[str, str, str]  # (service, version, address)


class EndpointState(msgspec.Struct, array_like=True):
    """One endpoint as one worker sees it. Sent only when it differs from the defaults (healthy,
    not ejected, no pooled connection), so a quiet worker's report stays small; the defaults
    also let a shorter entry (fields added later) decode."""

    service: str
    version: str
    address: str
    active: int = 0  # pooled upstream connections in use
    idle: int = 0
    healthy: bool = True  # what the active health checks say
    detail: str | None = None  # the failing check's words while unhealthy
    ejected: bool = False  # by this worker's passive outlier detection


class WorkerReport(msgspec.Struct, array_like=True):
    worker: int
    pid: int
    counters: Snapshot
    stats: dict[str, Any]  # Stats.snapshot()
    connections: int  # open client connections
    upstream_active: int
    upstream_idle: int
    mirror: dict[str, int]
    routing: dict[str, int]
    # Added later, so defaulted: a report without them still decodes (as zeros).
    policy: dict[str, Any] = {}  # PolicyRuntime.snapshot()
    health: dict[str, int] = {}  # proxy.rollout.metrics.health_counts(monitor)
    endpoints: list[EndpointState] = []  # the endpoints not in the default state


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerReport)


def encode(report: WorkerReport) -> bytes:
    payload = _encoder.encode(report)
    return FRAME.pack(len(payload)) + payload


async def read_report(reader: asyncio.StreamReader) -> WorkerReport:
    """The next report; IncompleteReadError when the worker is gone."""
    (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
    if size > MAX_FRAME:
        raise ValueError(f"report of {size} bytes is too large")
    return _decoder.decode(await reader.readexactly(size))


# --- adding up ----------------------------------------------------------------


def _add_slots(a: SlotTotals, b: SlotTotals) -> SlotTotals:
    codes = dict(a.codes)
    for status, count in b.codes.items():
        codes[status] = codes.get(status, 0) + count
    buckets = tuple(x + y for x, y in zip(a.buckets, b.buckets, strict=True))
    seconds = a.seconds + b.seconds
    return SlotTotals(codes, buckets, seconds, a.bytes_in + b.bytes_in, a.bytes_out + b.bytes_out)


def merge_snapshots(snapshots: list[Snapshot], at: float) -> Snapshot:
    """One snapshot holding the sum of ``snapshots``, matched by (route, service, version) name."""
    totals: dict[tuple[str, str, str], SlotTotals] = {}
    connect: dict[tuple[str, str, str], int] = {}
    for snapshot in snapshots:
        for key, slot in zip(snapshot.keys, snapshot.slots, strict=True):
            seen = totals.get(key)
            totals[key] = slot if seen is None else _add_slots(seen, slot)
        for key, count in snapshot.connect_errors.items():
            connect[key] = connect.get(key, 0) + count
    # Slot 0 (no route) stays first, as in a single process.
    keys = sorted(totals, key=lambda key: (key != ("", "", ""), key))
    return Snapshot(at, tuple(keys), tuple(totals[key] for key in keys), connect)


def merge_stats(snapshots: list[dict[str, Any]]) -> Stats:
    """A ``Stats`` whose every counter is the sum over ``snapshots`` (Stats.snapshot() dicts)."""
    merged = Stats()
    for snapshot in snapshots:
        for name in Stats.FIELDS:
            value = snapshot.get(name)
            if value is None:
                continue
            current = getattr(merged, name)
            if isinstance(current, dict):
                for key, count in value.items():
                    current[key] = current.get(key, 0) + count
            elif isinstance(current, list):
                for i, count in enumerate(value[: len(current)]):
                    current[i] += count
            else:
                setattr(merged, name, current + value)
    return merged


def add_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in dicts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


# JWKS per-URL fields that count events (summed); "keys" and "down" describe the present.
_JWKS_COUNTERS = ("fetches", "failures", "kid_fetches", "kid_refused")
_REDIS_COUNTERS = ("decisions", "round_trips", "errors", "outages")
_LIMIT_ZEROS = LimitCounters().as_dict()


def _add_into(total: dict[str, Any], counts: dict[str, Any], names: Iterable[str]) -> None:
    for name in names:
        total[name] = total.get(name, 0) + counts.get(name, 0)


def merge_policy(live: Iterable[dict[str, Any]], retired: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """One ``PolicyRuntime.snapshot()``-shaped dict summing the workers' snapshots.

    Counters (auth, JWKS fetches, rate limit outcomes per (route, limit), Redis round trips)
    are summed over ``live`` and ``retired`` (the last reports of exited workers, so sums
    never go backwards). Gauges come from ``live`` only, a dead worker's view being stale:
    JWKS ``keys`` is the largest any worker holds (each fetches the same set, so the max is
    what the instance can verify with), and JWKS or Redis ``down`` is true when any worker
    sees it down (some requests then fail or fall back).
    """
    auth: dict[str, Any] = {"verified": 0, "cache_hits": 0, "failures": {}, "headers_dropped": 0}
    jwks: dict[str, dict[str, Any]] = {}
    limits: dict[tuple[str, str], dict[str, Any]] = {}
    redis: dict[str, Any] | None = None
    for snapshot, is_live in [(s, True) for s in live] + [(s, False) for s in retired]:
        seen = snapshot.get("auth")
        if seen:
            _add_into(auth, seen, ("verified", "cache_hits", "headers_dropped"))
            failures = auth["failures"]
            for reason, count in seen.get("failures", {}).items():
                failures[reason] = failures.get(reason, 0) + count
        for url, remote in snapshot.get("jwks", {}).items():
            total = jwks.setdefault(url, {"keys": 0, **dict.fromkeys(_JWKS_COUNTERS, 0), "down": False})
            _add_into(total, remote, _JWKS_COUNTERS)
            if is_live:
                total["keys"] = max(total["keys"], remote.get("keys", 0))
                total["down"] = total["down"] or bool(remote.get("down"))
        for limit in snapshot.get("rate_limits", []):
            key = (limit["route"], limit["limit"])
            # Every outcome present, even if a worker's report lacks one: the metrics read them all.
            total = limits.setdefault(key, {"route": key[0], "limit": key[1], **_LIMIT_ZEROS})
            _add_into(total, limit, (name for name in limit if name not in ("route", "limit")))
        seen = snapshot.get("redis")
        if seen is not None:
            if redis is None:
                redis = {**dict.fromkeys(_REDIS_COUNTERS, 0), "down": False}
            _add_into(redis, seen, _REDIS_COUNTERS)
            if is_live:
                redis["down"] = redis["down"] or bool(seen.get("down"))
    merged: dict[str, Any] = {
        "auth": auth,
        "jwks": jwks,
        "rate_limits": [limits[key] for key in sorted(limits)],
    }
    if redis is not None:
        merged["redis"] = redis
    return merged


# --- endpoints: pools summed, health the worst any live worker holds --------------------


class EndpointTotals(msgspec.Struct):
    """One endpoint over the live workers (what the supervisor's /status shows)."""

    active: int = 0
    idle: int = 0
    healthy: bool = True  # False when any worker's health checks find it failing
    detail: str | None = None  # the words of the first such worker
    ejected: bool = False  # True when any worker ejected it
    unhealthy_in: int = 0  # how many workers hold it unhealthy
    ejected_in: int = 0  # how many workers hold it ejected
    out_in: set[int] = set()  # the workers (positions in ``live``) that send it nothing


class MergedEndpoints(msgspec.Struct):
    workers: int  # live workers that reported
    endpoints: dict[EndpointKey, EndpointTotals]  # only endpoints some worker reported

    def get(self, key: EndpointKey) -> EndpointTotals:
        """The totals of ``key``: the defaults when no worker reported it (healthy, idle)."""
        return self.endpoints.get(key) or EndpointTotals()


def merge_endpoints(live: Sequence[Sequence[EndpointState]]) -> MergedEndpoints:
    """The live workers' endpoint states (``WorkerReport.endpoints``) as one view.

    Pool connections are summed. Each worker's health checks and outlier detection act on
    its own evidence, so the workers may disagree; the view shows the worst state any of them
    holds, and in how many.
    """
    totals: dict[EndpointKey, EndpointTotals] = {}
    for worker, states in enumerate(live):
        for state in states:
            key = (state.service, state.version, state.address)
            total = totals.get(key)
            if total is None:
                total = totals[key] = EndpointTotals()
            total.active += state.active
            total.idle += state.idle
            if not state.healthy:
                if total.healthy:
                    total.healthy, total.detail = False, state.detail
                total.unhealthy_in += 1
            if state.ejected:
                total.ejected = True
                total.ejected_in += 1
            if state.ejected or not state.healthy:
                total.out_in.add(worker)
    return MergedEndpoints(len(live), totals)


# --- the counters of workers that exited -----------------------------------------------


class Retired:
    """The counters of every worker that exited, folded into one running total per kind.

    Memory stays bounded by the config (its route and endpoint names), not by the number of
    restarts. Gauges are not kept: a dead worker holds no connection and its view is stale.
    """

    def __init__(self) -> None:
        self.counters: Snapshot | None = None
        self.stats: dict[str, Any] = {}
        self.policy: dict[str, Any] = {}
        self.health: dict[str, int] = {}
        self.mirror: dict[str, int] = {}
        self.routing: dict[str, int] = {}
        self.folded = 0  # reports folded in so far

    def fold(self, report: WorkerReport) -> None:
        """Add the counters of ``report`` (a dead worker's last) to the totals."""
        previous = [] if self.counters is None else [self.counters]
        self.counters = merge_snapshots([*previous, report.counters], 0.0)
        self.stats = merge_stats([self.stats, report.stats]).snapshot()
        # As retired reports, so that merge_policy keeps their counters and drops their gauges.
        self.policy = merge_policy([], [self.policy, report.policy])
        self.health = add_counts([self.health, report.health])
        self.mirror = add_counts([self.mirror, report.mirror])
        self.routing = add_counts([self.routing, report.routing])
        self.folded += 1

    def snapshots(self) -> list[Snapshot]:
        """The retired request counters, as a list to put before the live workers' snapshots."""
        return [] if self.counters is None else [self.counters]
