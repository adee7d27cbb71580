"""One connection to an upstream endpoint: a thin protocol that hands bytes to its owner.

The request/response state machine lives in ``proxy.http.downstream.Downstream`` (the
owner while leased); this class only knows whether it is alive and whom to tell.
An idle (pooled) connection has no owner: any byte or close from the server while
idle means the connection is dead and must never be leased again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.http.pool import EndpointPool


class Upstream(asyncio.Protocol):
    __slots__ = ("pool", "transport", "owner", "alive", "idle_since", "read_paused")

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.owner: Any = None
        self.alive = False
        self.idle_since = 0.0
        self.read_paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.alive = True

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:
            # An idle connection must be silent; anything here means it is unusable.
            self.alive = False
            self.transport.close()
            return
        owner.upstream_data(data)

    def eof_received(self) -> bool:
        self.alive = False
        return False  # let the transport close itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        owner = self.owner
        if owner is not None:
            self.owner = None
            owner.upstream_lost(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_write_paused(False)

    def pause_reading(self) -> None:
        if not self.read_paused and self.alive:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if self.alive:
                self.transport.resume_reading()

    def close(self) -> None:
        self.alive = False
        self.owner = None
        if self.transport is not None:
            self.transport.close()
