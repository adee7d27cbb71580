"""Judging a canary on one window of graylane's own counters: pure functions, no clock, no I/O.

Theory of operation
-------------------
Every ``interval`` the controller hands two counter snapshots (the previous check's and
now's) to ``version_stats``, which keeps the slots of one route and adds them up per
version. ``judge`` turns the canary's figures (and the stable version's, for the
relative limits) into a ``Verdict``:

- *inconclusive* when the canary served fewer than ``min_requests`` requests: too few
  to tell. Low traffic must neither roll back a good version nor promote an untested one.
- *fail* when any limit is broken: the error ratio (5xx answers; graylane answers
  connect failures and upstream timeouts with 502/504, so they count) reaches
  ``max_error_rate``; the p99 latency reaches ``max_p99``; or the canary is worse than
  the stable version by more than ``max_error_rate_increase`` / ``max_p99_increase``.
  The relative limits are only applied when the stable version itself served at least
  ``min_requests`` in the window (otherwise there is nothing to compare with).
- *pass* otherwise.

The p99 comes from the latency histogram (``proxy.observe.window.histogram_quantile``),
so it is an estimate within one bucket, as Prometheus' ``histogram_quantile`` would give.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from proxy.config.schema import Analysis
from proxy.observe.counters import Snapshot
from proxy.observe.window import WindowStats, stats_between

Outcome = Literal["pass", "fail", "inconclusive"]


class Figures(NamedTuple):
    """What one version did in one window."""

    requests: int
    errors: int
    error_rate: float  # errors / requests (0.0 without requests)
    p99: float | None  # seconds; None without requests

    @classmethod
    def of(cls, stats: WindowStats | None) -> Figures:
        if stats is None:
            return cls(0, 0, 0.0, None)
        return cls(stats.requests, stats.errors, stats.error_ratio, stats.p99)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p99": self.p99,
        }


class Verdict(NamedTuple):
    outcome: Outcome
    reasons: tuple[str, ...]  # why it failed or was inconclusive; empty when it passed
    canary: Figures
    stable: Figures

    def explain(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "all limits met"

    def summary(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "canary": self.canary.summary(),
            "stable": self.stable.summary(),
        }


def version_stats(older: Snapshot, newer: Snapshot, route: str) -> dict[str, WindowStats]:
    """Per version of ``route``, what it did between two snapshots (versions without slots are absent)."""
    out: dict[str, WindowStats] = {}
    keys = newer.keys
    for slot, stats in stats_between(older, newer).items():
        slot_route, _, version = keys[slot]
        if slot_route != route:
            continue
        seen = out.get(version)
        out[version] = stats if seen is None else seen + stats
    return out


def judge(canary: WindowStats | None, stable: WindowStats | None, analysis: Analysis) -> Verdict:
    """The verdict on one window; see the module docstring for the rules."""
    mine, theirs = Figures.of(canary), Figures.of(stable)
    if mine.requests < analysis.min_requests:
        reason = f"{mine.requests} canary requests, fewer than min_requests {analysis.min_requests}"
        return Verdict("inconclusive", (reason,), mine, theirs)
    reasons = list(_absolute_breaches(mine, analysis))
    if theirs.requests >= max(1, analysis.min_requests):
        reasons += _relative_breaches(mine, theirs, analysis)
    return Verdict("fail" if reasons else "pass", tuple(reasons), mine, theirs)


def _absolute_breaches(mine: Figures, analysis: Analysis) -> list[str]:
    found = []
    if analysis.max_error_rate is not None and mine.error_rate >= analysis.max_error_rate:
        found.append(
            f"error rate {_percent(mine.error_rate)} >= max_error_rate {_percent(analysis.max_error_rate)}"
        )
    if analysis.max_p99 is not None and mine.p99 is not None and mine.p99 >= analysis.max_p99:
        found.append(f"p99 {_ms(mine.p99)} >= max_p99 {_ms(analysis.max_p99)}")
    return found


def _relative_breaches(mine: Figures, theirs: Figures, analysis: Analysis) -> list[str]:
    found = []
    margin = analysis.max_error_rate_increase
    if margin is not None and mine.error_rate > theirs.error_rate + margin:
        found.append(
            f"error rate {_percent(mine.error_rate)} > stable {_percent(theirs.error_rate)}"
            f" + {_percent(margin)}"
        )
    slack = analysis.max_p99_increase
    if (
        slack is not None
        and mine.p99 is not None
        and theirs.p99 is not None
        and mine.p99 > theirs.p99 + slack
    ):
        found.append(f"p99 {_ms(mine.p99)} > stable {_ms(theirs.p99)} + {_ms(slack)}")
    return found


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.3g}%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.4g}ms"
