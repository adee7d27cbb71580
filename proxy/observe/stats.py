"""Plain integer counters the data plane increments; nothing slower than ``+= 1`` per request.

The exposition side (Prometheus, /status) reads these at scrape time.
"""

from __future__ import annotations


class Stats:
    __slots__ = (
        "requests",  # finished requests
        "responses_by_class",  # list indexed by status // 100 (0..5)
        "errors_by_flag",  # dict flag -> count, for errors graylane answered or saw
        "upstream_connects",
        "upstream_connect_errors",
        "upstream_timeouts",
        "pool_hits",
        "pool_misses",
        "retries",
        "rejected_by_reason",  # dict reason -> count (400, 408, 414, 431 ...)
        "accept_paused",
        "reloads_ok",
        "reloads_failed",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.responses_by_class = [0] * 6
        self.errors_by_flag: dict[str, int] = {}
        self.upstream_connects = 0
        self.upstream_connect_errors = 0
        self.upstream_timeouts = 0
        self.pool_hits = 0
        self.pool_misses = 0
        self.retries = 0
        self.rejected_by_reason: dict[str, int] = {}
        self.accept_paused = 0
        self.reloads_ok = 0
        self.reloads_failed = 0

    def count_error(self, flag: str) -> None:
        self.errors_by_flag[flag] = self.errors_by_flag.get(flag, 0) + 1

    def count_rejected(self, reason: str) -> None:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1

    def snapshot(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}
