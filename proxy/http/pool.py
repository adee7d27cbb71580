"""Per-endpoint keep-alive pools of upstream connections.

Idle connections are kept LIFO (the most recently used is the warmest and the least
likely to have been closed by the server). An idle connection that becomes readable
or is closed is dead: ``Upstream`` marks itself so and ``acquire`` skips it. Old idle
connections are closed by the server's periodic sweep, not by a timer each.
"""

from __future__ import annotations

import asyncio
import socket

from proxy.config.schema import Pool as PoolSettings
from proxy.errors import UpstreamConnectError, UpstreamTimeout
from proxy.http.upstream import Upstream
from proxy.observe.stats import Stats


class EndpointPool:
    __slots__ = ("host", "port", "settings", "idle", "stats", "retired", "active")

    def __init__(self, host: str, port: int, settings: PoolSettings, stats: Stats) -> None:
        self.host = host
        self.port = port
        self.settings = settings
        self.idle: list[Upstream] = []
        self.stats = stats
        self.retired = False  # the endpoint left the config: close connections as they come back
        self.active = 0  # connections leased out

    def acquire(self) -> Upstream | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.alive:
                self.active += 1
                return conn
        return None

    def release(self, conn: Upstream, now: float) -> None:
        """Take back a connection after a complete exchange that left it reusable."""
        self.active -= 1
        if self.retired or not conn.alive or len(self.idle) >= self.settings.max_idle:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def discard(self, conn: Upstream) -> None:
        """A leased connection that cannot be reused."""
        self.active -= 1
        conn.close()

    async def connect(self) -> Upstream:
        """Open a fresh connection (the pool-miss path), leased to the caller."""
        loop = asyncio.get_running_loop()
        self.stats.upstream_connects += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Upstream(self), self.host, self.port),
                self.settings.connect_timeout,
            )
        except TimeoutError:
            self.stats.upstream_connect_errors += 1
            raise UpstreamTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            self.stats.upstream_connect_errors += 1
            reason = exc.strerror or exc
            raise UpstreamConnectError(f"connect to {self.host}:{self.port} failed: {reason}") from None
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.active += 1
        return conn

    def sweep(self, now: float) -> None:
        """Close idle connections older than the idle timeout (the oldest are at the front)."""
        idle = self.idle
        limit = now - self.settings.idle_timeout
        drop = 0
        while drop < len(idle) and (idle[drop].idle_since < limit or not idle[drop].alive):
            idle[drop].close()
            drop += 1
        if drop:
            del idle[:drop]

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class PoolRegistry:
    """All endpoint pools, keyed by (host, port); kept across reloads for endpoints still present."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.pools: dict[tuple[str, int], EndpointPool] = {}

    def get(self, host: str, port: int, settings: PoolSettings) -> EndpointPool:
        key = (host, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = EndpointPool(host, port, settings, self.stats)
        return pool

    def keep_only(self, keys: set[tuple[str, int]], settings: dict[tuple[str, int], PoolSettings]) -> None:
        """After a reload: retire pools of endpoints that left, update the settings of the others."""
        for key in list(self.pools):
            pool = self.pools[key]
            if key in keys:
                pool.settings = settings[key]
            else:
                pool.retired = True
                pool.close_idle()
                del self.pools[key]

    def sweep(self, now: float) -> None:
        for pool in self.pools.values():
            if pool.idle:
                pool.sweep(now)

    def close_idle(self) -> None:
        for pool in self.pools.values():
            pool.close_idle()

    def idle_count(self) -> int:
        return sum(len(pool.idle) for pool in self.pools.values())
