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

from proxy._fast import exchange as _exchange
from proxy.observe.snapshot import BOUNDS, NO_ROUTE, Key, SlotTotals, Snapshot

# The class lives in proxy._fast.exchange: compiled, record() is a C call from the data plane.
RequestCounters = _exchange.RequestCounters

__all__ = ["BOUNDS", "NO_ROUTE", "Key", "RequestCounters", "SlotTotals", "Snapshot"]
