"""The request counters at one moment: immutable msgspec Structs, ready to travel as msgpack.

``proxy.observe.counters`` explains the counting; this module holds what a snapshot of it is,
so that the counters (compiled with the data plane) and their readers share the types.
"""

from __future__ import annotations

import msgspec

# Upper bounds (seconds) of the latency histogram buckets, Prometheus style ("le");
# one more bucket after the last bound holds everything slower (+Inf).
BOUNDS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NO_ROUTE = 0  # the slot of requests without a route

Key = tuple[str, str, str]  # (route, service, version)


class SlotTotals(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Everything counted for one slot since the process started."""

    codes: dict[int, int]  # status -> responses
    buckets: tuple[int, ...]  # requests per latency bucket (not cumulative); len(BOUNDS) + 1, last is +Inf
    seconds: float  # sum of request durations
    bytes_in: int  # request body bytes received from clients
    bytes_out: int  # response bytes sent to clients: head and body, as the access log counts them

    @property
    def requests(self) -> int:
        return sum(self.buckets)


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """The counters at one moment; ``slots[i]`` belongs to ``keys[i]``."""

    at: float  # when it was taken (the caller's clock, e.g. loop.time())
    keys: tuple[Key, ...]
    slots: tuple[SlotTotals, ...]
    connect_errors: dict[tuple[str, str, str], int]  # (service, version, endpoint) -> failed connects
