"""Per-(route, service, version) request counters: the data plane's one stats call per request.

Theory of operation
-------------------
A *slot* is a small integer naming one (route, service, version) triple. The server
asks ``slot()`` for each compiled ``Target`` after every config compile and stores
the answer in ``Target.stats_slot``; a triple keeps its slot for the life of the
process, so a reload never resets a counter (Prometheus counters must only grow)
and a route that disappears keeps its last values. Slot 0 is reserved for requests
that matched no route (404, 400 ...): route, service and version are "".

``record()`` runs once per finished request and only increments plain lists and a
dict (no locks: the event loop is the only writer). Everything else — cumulative
histogram buckets, 5xx counts, rates, quantiles — is computed on the read side from
``snapshot()``, which copies the counters into immutable msgspec Structs (ready to
be sent between processes as msgpack).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from proxy.routing.decision import Target

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


class RequestCounters:
    """Request counters per slot; see the module docstring."""

    __slots__ = ("_index", "_keys", "_codes", "_buckets", "_seconds", "_bytes_in", "_bytes_out", "_connect")

    def __init__(self) -> None:
        self._index: dict[Key, int] = {}
        self._keys: list[Key] = []
        # Parallel lists indexed by slot: record() touches each once.
        self._codes: list[dict[int, int]] = []
        self._buckets: list[list[int]] = []
        self._seconds: list[float] = []
        self._bytes_in: list[int] = []
        self._bytes_out: list[int] = []
        self._connect: dict[tuple[str, str, str], int] = {}
        self.slot("", "", "")  # NO_ROUTE

    # --- slots (config compile time) ----------------------------------------------------

    def slot(self, route: str, service: str, version: str) -> int:
        """The slot of a (route, service, version), created on first use and kept forever."""
        key = (route, service, version)
        found = self._index.get(key)
        if found is not None:
            return found
        # Grow every list before publishing the index: record() may never see a half-made slot.
        self._codes.append({})
        self._buckets.append([0] * (len(BOUNDS) + 1))
        self._seconds.append(0.0)
        self._bytes_in.append(0)
        self._bytes_out.append(0)
        self._keys.append(key)
        found = self._index[key] = len(self._keys) - 1
        return found

    def assign(self, targets: Iterable[Target]) -> None:
        """Set ``stats_slot`` of every target of a freshly compiled route table (``table.targets``)."""
        for target in targets:
            target.stats_slot = self.slot(target.route_name, target.group.service, target.version_name)

    @property
    def keys(self) -> tuple[Key, ...]:
        """(route, service, version) per slot."""
        return tuple(self._keys)

    # --- hot path ------------------------------------------------------------------------

    def record(self, slot: int, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """Count one finished request: its status, duration, request body bytes and response bytes."""
        codes = self._codes[slot]
        codes[status] = codes.get(status, 0) + 1
        self._buckets[slot][bisect_left(BOUNDS, seconds)] += 1
        self._seconds[slot] += seconds
        self._bytes_in[slot] += bytes_in
        self._bytes_out[slot] += bytes_out

    def connect_error(self, service: str, version: str, endpoint: str) -> None:
        """Count a failed connect to an upstream endpoint (rare path)."""
        key = (service, version, endpoint)
        self._connect[key] = self._connect.get(key, 0) + 1

    # --- read side -----------------------------------------------------------------------

    def snapshot(self, at: float = 0.0) -> Snapshot:
        """Copy every counter (cumulative since start) into an immutable ``Snapshot``."""
        slots = tuple(
            SlotTotals(dict(codes), tuple(buckets), seconds, bytes_in, bytes_out)
            for codes, buckets, seconds, bytes_in, bytes_out in zip(
                self._codes, self._buckets, self._seconds, self._bytes_in, self._bytes_out, strict=True
            )
        )
        return Snapshot(at, tuple(self._keys), slots, dict(self._connect))
