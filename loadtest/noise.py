"""Noise: how much of the benchmark's CPUs other work took during a measured run.

The machine may be shared: tests, builds or other benchmarks take CPU from wrk, the backend
or the proxy, and a proxy that gets half a CPU serves half the requests. /proc/stat read
before and after a run says how much each CPU spent running processes; what the processes
we started did not use (plus the hypervisor's steal) is the noise of that run.
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
        f"noise: other processes and steal took a median {100 * statistics.median(shares):.0f}% "
        f"(max {100 * max(shares):.0f}%) of a CPU group (the load's or the proxy's) during the measured runs"
        f"{tail}."
    ]
