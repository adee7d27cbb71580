"""Noise: how much CPU other work took from a measured run.

The machine may be shared: tests, builds or other benchmarks take CPU from wrk, the backend
or the proxy, and a proxy that gets half a CPU serves half the requests. Two measures:

- a proxy alone on its CPU: its run delay (``/proc/PID/schedstat``: time runnable but
  waiting for the CPU) over the run's wall time. Other work using the CPU while the proxy
  sleeps costs nothing and is not counted.
- CPUs our processes keep busy (the direct run: wrk and the backend; a proxy spread over
  every CPU): from /proc/stat before and after, the time processes other than ours ran
  there, plus the hypervisor's steal, over all the time of those CPUs.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from loadtest.procs import core_times
from loadtest.report import Run


def other_share(core: dict[str, int], known_ticks: int) -> float | None:
    """The share of some CPUs' time that other work took: (process time not ``known_ticks`` +
    steal) / all time, from ``core_times`` deltas."""
    total = sum(core.values())
    if total <= 0:
        return None
    return (max(0, core.get("tasks", 0) - known_ticks) + core.get("steal", 0)) / total


def delay_share(delay_ns: int, seconds: float) -> float | None:
    """Run delay over wall time (at most 1: several waiting processes are not more than all of it)."""
    if seconds <= 0:
        return None
    return min(1.0, max(0.0, delay_ns / 1e9 / seconds))


def noise_share(before: str, after: str, groups: Sequence[tuple[Sequence[int], int]]) -> float | None:
    """The largest ``other_share`` over groups of (CPUs, ticks of the processes we know ran there),
    between two readings of /proc/stat."""
    shares = []
    for cpus, known in groups:
        start, end = core_times(before, cpus), core_times(after, cpus)
        share = other_share({k: end[k] - start[k] for k in end}, known)
        if share is not None:
            shares.append(share)
    return max(shares) if shares else None


def noise_notes(runs: Sequence[Run], max_noise: float | None = None) -> list[str]:
    """How much of the CPUs other work took during the kept runs (the noise on the figures)."""
    shares = [r.noise for r in runs if r.noise is not None]
    if not shares:
        return []
    over = sum(1 for share in shares if max_noise is not None and share > max_noise)
    tail = f"; {over} run(s) stayed above {100 * max_noise:.0f}% after retries" if over and max_noise else ""
    return [
        f"noise: other work took a median {100 * statistics.median(shares):.0f}% "
        f"(max {100 * max(shares):.0f}%) of the measured runs' CPU time{tail}."
    ]
