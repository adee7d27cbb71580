"""The last minute of request counters, for "how is each version doing right now".

Theory of operation
-------------------
A timer calls ``Window.tick(now)`` about once per second; each tick stores a
cumulative ``Snapshot`` of the ``RequestCounters`` in a ring of ``span + 1``
entries. The figures for the last N seconds are the difference between the newest
snapshot and the one taken closest to N seconds before it: ``stats_between`` (a
pure function, also used by the rollout analysis) turns two snapshots into one
``WindowStats`` per slot; ``by_version`` adds those of every route of a
(service, version). Latency quantiles are estimated from the histogram bucket
differences the way Prometheus' ``histogram_quantile`` does: linear interpolation
inside the bucket that holds the wanted rank.

Errors are 5xx responses: connect failures and upstream timeouts are answered
502/504 by graylane, so they are among them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.observe.counters import BOUNDS, NO_ROUTE, RequestCounters, SlotTotals, Snapshot


def histogram_quantile(q: float, counts: Sequence[int], bounds: Sequence[float] = BOUNDS) -> float | None:
    """The ``q`` quantile (0..1) of observations counted per bucket (not cumulative).

    ``counts`` has ``len(bounds) + 1`` entries, the last for +Inf. None without
    observations. A rank falling in the +Inf bucket yields the highest finite bound
    (Prometheus does the same: nothing better is known).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q}")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0  # observations in the buckets before the current one
    for i, bound in enumerate(bounds):
        count = counts[i]
        if below + count >= rank:
            lower = bounds[i - 1] if i else 0.0
            if count <= 0:  # rank 0 before any observation
                return lower
            return lower + (bound - lower) * (rank - below) / count
        below += count
    return float(bounds[-1])


class WindowStats:
    """What one slot (or one version across routes) did during ``seconds``."""

    __slots__ = ("seconds", "codes", "buckets", "latency_sum", "bytes_in", "bytes_out")

    def __init__(
        self,
        seconds: float,
        codes: dict[int, int],
        buckets: tuple[int, ...],
        latency_sum: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        self.seconds = seconds  # length of the interval
        self.codes = codes  # status -> responses, only statuses seen in the interval
        self.buckets = buckets  # requests per latency bucket (BOUNDS, then +Inf)
        self.latency_sum = latency_sum
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out

    @property
    def requests(self) -> int:
        return sum(self.buckets)

    @property
    def errors(self) -> int:
        """5xx responses."""
        return sum(count for status, count in self.codes.items() if 500 <= status <= 599)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        """5xx responses per second."""
        return self.errors / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_ratio(self) -> float:
        """Share of requests answered 5xx (0.0 without requests)."""
        requests = self.requests
        return self.errors / requests if requests else 0.0

    def quantile(self, q: float) -> float | None:
        """Estimated latency quantile in seconds, None without requests."""
        return histogram_quantile(q, self.buckets)

    @property
    def p50(self) -> float | None:
        return self.quantile(0.5)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    @property
    def mean(self) -> float | None:
        requests = self.requests
        return self.latency_sum / requests if requests else None

    def __add__(self, other: WindowStats) -> WindowStats:
        """Both together (two routes of one version over the same interval)."""
        codes = dict(self.codes)
        for status, count in other.codes.items():
            codes[status] = codes.get(status, 0) + count
        return WindowStats(
            max(self.seconds, other.seconds),
            codes,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
            self.latency_sum + other.latency_sum,
            self.bytes_in + other.bytes_in,
            self.bytes_out + other.bytes_out,
        )

    def summary(self) -> dict[str, Any]:
        """The figures as plain JSON-ready values (admin API, dashboard)."""
        return {
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "rate": self.rate,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "error_ratio": self.error_ratio,
            "p50": self.p50,
            "p99": self.p99,
            "mean": self.mean,
            "codes": {str(status): count for status, count in sorted(self.codes.items())},
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }

    def __repr__(self) -> str:
        return (
            f"WindowStats({self.requests} requests in {self.seconds:.3g}s, {self.errors} errors, "
            f"p50={self.p50}, p99={self.p99})"
        )


_EMPTY = SlotTotals({}, (0,) * (len(BOUNDS) + 1), 0.0, 0, 0)


def _difference(older: SlotTotals, newer: SlotTotals, seconds: float) -> WindowStats:
    if newer.requests < older.requests:
        older = _EMPTY  # the source restarted (a worker process): its counters began again
    codes = {}
    before = older.codes
    for status, count in newer.codes.items():
        grown = count - before.get(status, 0)
        if grown:
            codes[status] = grown
    return WindowStats(
        seconds,
        codes,
        tuple(b - a for a, b in zip(older.buckets, newer.buckets, strict=True)),
        newer.seconds - older.seconds,
        newer.bytes_in - older.bytes_in,
        newer.bytes_out - older.bytes_out,
    )


def stats_between(older: Snapshot, newer: Snapshot) -> dict[int, WindowStats]:
    """Per slot, what happened from ``older`` to ``newer`` (slots new since ``older`` started at 0)."""
    seconds = newer.at - older.at
    before = older.slots
    return {
        slot: _difference(before[slot] if slot < len(before) else _EMPTY, totals, seconds)
        for slot, totals in enumerate(newer.slots)
    }


def by_version(
    per_slot: Mapping[int, WindowStats], keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str], WindowStats]:
    """Add up the slots of each (service, version) across routes; the no-route slot is left out."""
    out: dict[tuple[str, str], WindowStats] = {}
    for slot, stats in per_slot.items():
        if slot == NO_ROUTE:
            continue
        _, service, version = keys[slot]
        key = (service, version)
        seen = out.get(key)
        out[key] = stats if seen is None else seen + stats
    return out


class Window:
    """A ring of about ``span`` seconds of counter snapshots, fed by ``tick``."""

    def __init__(self, counters: RequestCounters, span: int = 60) -> None:
        if span < 1:
            raise ValueError(f"span must be at least 1 second, not {span}")
        self.counters = counters
        self.span = span
        self._ring: deque[Snapshot] = deque(maxlen=span + 1)

    def tick(self, now: float) -> None:
        """Take a snapshot; call about once per second with a monotonic clock (loop.time())."""
        ring = self._ring
        if ring and now <= ring[-1].at:
            ring.pop()  # the clock did not move: keep the newer counters only
        ring.append(self.counters.snapshot(now))

    def pair(self, last: float) -> tuple[Snapshot, Snapshot] | None:
        """(older, newer) snapshots about ``last`` seconds apart, None before the second tick.

        The older one is the snapshot taken closest to ``last`` seconds before the
        newest (the oldest kept when the ring does not reach that far back).
        """
        ring = self._ring
        if len(ring) < 2:
            return None
        newer = ring[-1]
        wanted = newer.at - last
        older = ring[0]
        for snap in ring:
            if snap is newer:
                break
            if abs(snap.at - wanted) < abs(older.at - wanted):
                older = snap
        return older, newer

    def per_slot(self, last: float = 60.0) -> dict[int, WindowStats]:
        """Each slot's figures for about the last ``last`` seconds ({} before the second tick)."""
        pair = self.pair(last)
        return {} if pair is None else stats_between(*pair)

    def per_version(self, last: float = 60.0) -> dict[tuple[str, str], WindowStats]:
        """Each (service, version)'s figures for about the last ``last`` seconds, across routes."""
        pair = self.pair(last)
        if pair is None:
            return {}
        return by_version(stats_between(*pair), pair[1].keys)
