"""Mirroring: shadow copies of requests to another version, fire and forget.

A copy is sent only when the whole request is in hand when its head is routed (no
body, or a body that arrived with the head, up to ``MAX_BODY``): streaming a body to
two places would tie the real request to the mirror's speed. Each route has at most
``max_pending`` copies queued or in flight; beyond that copies are dropped and
counted. Copies use their own small keep-alive pools, their answers are read and
thrown away, and nothing about them (slowness, errors) reaches the client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from proxy._fast import http1
from proxy.errors import GraylaneError

log = logging.getLogger("graylane")

MAX_BODY = 64 * 1024
MAX_IDLE = 16
READ_SIZE = 64 * 1024
MIRROR_HEADER = b"X-Graylane-Mirror: 1\r\n"

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
COPY_ERRORS = (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, GraylaneError)


class MirrorStats:
    __slots__ = ("sent", "dropped", "failed", "skipped_body")

    def __init__(self) -> None:
        self.sent = 0  # copies answered by the mirror
        self.dropped = 0  # copies not sent because max_pending were already pending
        self.failed = 0  # copies that failed (connect, timeout, bad answer)
        self.skipped_body = 0  # requests not copied because their body was streaming


class Mirror:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.stats = MirrorStats()
        self.pending: dict[int, int] = {}  # route id -> copies queued or in flight
        self.idle: dict[tuple[str, int], list[Connection]] = {}

    def submit(self, route_id: int, max_pending: int, endpoint: Any, head: bytes, body: bytes) -> None:
        """Send a copy of a request (its upstream head and complete body) to ``endpoint``."""
        pending = self.pending.get(route_id, 0)
        if pending >= max_pending:
            self.stats.dropped += 1
            return
        self.pending[route_id] = pending + 1
        request = head[:-2] + MIRROR_HEADER + b"\r\n" + body
        self.loop.create_task(self._send(route_id, endpoint, request))

    async def _send(self, route_id: int, endpoint: Any, request: bytes) -> None:
        settings = endpoint.pool
        try:
            timeout = settings.request_timeout or settings.response_head_timeout
            await asyncio.wait_for(self._exchange(endpoint, request), timeout)
            self.stats.sent += 1
        except COPY_ERRORS as exc:
            self.stats.failed += 1
            log.debug("mirror copy to %s failed: %s", endpoint.address, exc)
        finally:
            self.pending[route_id] -= 1

    async def _exchange(self, endpoint: Any, request: bytes) -> None:
        key = endpoint.key
        idle = self.idle.setdefault(key, [])
        conn = None
        while idle and conn is None:
            candidate = idle.pop()
            if not candidate[0].at_eof() and not candidate[1].is_closing():
                conn = candidate
        if conn is None:
            conn = await asyncio.wait_for(
                asyncio.open_connection(endpoint.host, endpoint.port), endpoint.pool.connect_timeout
            )
        reader, writer = conn
        try:
            writer.write(request)
            reusable = await self._discard_response(reader)
        except BaseException:
            writer.close()
            raise
        if reusable and len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            writer.close()

    @staticmethod
    async def _discard_response(reader: asyncio.StreamReader) -> bool:
        """Read one response and throw it away; True when the connection can be reused."""
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            resp = http1.parse_response_head(head, 256)
            if resp.status >= 200:
                break
        if resp.status in (204, 304):
            return resp.keep_alive
        if resp.chunked:
            decoder = http1.ChunkedDecoder(GraylaneError)
            while not decoder.done:
                data = await reader.read(READ_SIZE)
                if not data:
                    return False
                _, used = decoder.feed(data)
                if used < len(data):
                    return False
            return resp.keep_alive
        if resp.content_length >= 0:
            remaining = resp.content_length
            while remaining:
                data = await reader.read(min(remaining, READ_SIZE))
                if not data:
                    return False
                remaining -= len(data)
            return resp.keep_alive
        while await reader.read(READ_SIZE):
            pass
        return False

    def close(self) -> None:
        for conns in self.idle.values():
            for _, writer in conns:
                writer.close()
        self.idle.clear()
