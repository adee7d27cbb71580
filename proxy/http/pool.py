"""Per-endpoint keep-alive pools of upstream connections.

Idle connections are kept LIFO (the most recently used is the warmest and the least
likely to have been closed by the server). An idle connection that becomes readable
or is closed is dead: ``Upstream`` marks itself so and ``acquire`` skips it. Old idle
connections are closed by the server's periodic sweep, not by a timer each.

The classes live in ``proxy._fast.exchange`` (compiled with the exchange that leases
the connections); this module is where the rest of graylane finds them.
"""

from __future__ import annotations

from proxy._fast import exchange as _exchange

EndpointPool = _exchange.EndpointPool
PoolRegistry = _exchange.PoolRegistry

__all__ = ["EndpointPool", "PoolRegistry"]
