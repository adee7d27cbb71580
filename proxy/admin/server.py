"""A small HTTP/1.1 server for the admin API (off the data path, so plain coroutines).

Routes are a table of (method, path) -> handler; every answer is JSON and the
connection closes after it. A bearer token, when configured, guards everything
but /live and /ready (probes must not need secrets).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from proxy._fast import http1
from proxy.admin.status import redacted_config
from proxy.config.schema import Admin
from proxy.errors import HttpError
from proxy.http.responses import status_line
from proxy.observe.metrics import CONTENT_TYPE
from proxy.runtime.listener import open_socket

log = logging.getLogger("graylane")

Handler = Callable[[], Awaitable[tuple[int, Any]]]
OPEN_PATHS = frozenset([b"/live", b"/ready"])
MAX_HEAD = 16 * 1024
ROLLOUT_PREFIX = b"/rollouts/"
WINDOW_SECONDS = 60.0


class Text:
    """A non-JSON answer (the Prometheus exposition)."""

    __slots__ = ("payload", "content_type")

    def __init__(self, payload: bytes, content_type: bytes) -> None:
        self.payload = payload
        self.content_type = content_type


class AdminServer:
    def __init__(self, config: Admin, source: Any) -> None:
        self.config = config
        # What the answers are made of: a Server (one process) or a Supervisor (the sums of
        # its workers); both have ready_state, stats_document, metrics_text, status_document,
        # config and reload.
        self.source = source
        self.token = config.token.encode() if config.token else None
        self.routes: dict[tuple[bytes, bytes], Handler] = {
            (b"GET", b"/live"): self.live,
            (b"GET", b"/ready"): self.ready,
            (b"GET", b"/stats"): self.stats,
            (b"GET", b"/metrics"): self.metrics,
            (b"GET", b"/status"): self.status,
            (b"GET", b"/config"): self.config_document,
            (b"POST", b"/reload"): self.reload,
            (b"GET", b"/rollouts"): self.rollouts,
        }
        self._server: asyncio.AbstractServer | None = None
        self.bound = config.address

    async def start(self) -> None:
        sock = open_socket(self.config.address)
        self._server = await asyncio.start_server(self._handle, sock=sock)
        host, port = sock.getsockname()[:2]
        self.bound = f"{host}:{port}"
        log.info("admin API on %s", self.bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if len(head) > MAX_HEAD:
                raise asyncio.LimitOverrunError("head too large", len(head))
            req = http1.parse_request_head(head, 8192, 100)
            status, body = await self._dispatch(req)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        except HttpError as error:
            status, body = error.status, {"error": error.reason}
        if isinstance(body, Text):
            payload, content_type = body.payload, body.content_type
        else:
            payload, content_type = json.dumps(body, indent=1).encode() + b"\n", b"application/json"
        head = b"Content-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        if status == 401:
            # RFC 9110 11.6.1: a 401 names the scheme a client should answer with.
            head = b'WWW-Authenticate: Bearer realm="graylane admin"\r\n' + head
        writer.write(status_line(status) + head % (content_type, len(payload)) + payload)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def _dispatch(self, req: Any) -> tuple[int, Any]:
        handler = self.routes.get((req.method, req.path))
        if handler is None and req.path.startswith(ROLLOUT_PREFIX):
            if self.token is not None and not self._authorized(req):
                return 401, {"error": "a valid bearer token is required"}
            if req.method != b"POST":
                return 405, {"error": "method not allowed"}
            return self.rollout_action(req.path[len(ROLLOUT_PREFIX) :])
        if handler is None:
            known = [path for _, path in self.routes]
            if req.path in known:
                return 405, {"error": "method not allowed"}
            return 404, {"error": "not found"}
        if self.token is not None and req.path not in OPEN_PATHS and not self._authorized(req):
            return 401, {"error": "a valid bearer token is required"}
        return await handler()

    def _authorized(self, req: Any) -> bool:
        # RFC 9110 11.1: the scheme name is case-insensitive ("bearer" is as good as "Bearer").
        scheme, _, credentials = (req.header(b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(b" "), self.token)

    async def live(self) -> tuple[int, Any]:
        return 200, {"status": "live"}

    async def ready(self) -> tuple[int, Any]:
        state = self.source.ready_state()
        return (200 if state == "ready" else 503), {"status": state}

    async def stats(self) -> tuple[int, Any]:
        return 200, self.source.stats_document()

    async def metrics(self) -> tuple[int, Any]:
        return 200, Text(self.source.metrics_text(), CONTENT_TYPE.encode())

    async def status(self) -> tuple[int, Any]:
        return 200, self.source.status_document(WINDOW_SECONDS)

    async def config_document(self) -> tuple[int, Any]:
        return 200, redacted_config(self.source.config)

    async def rollouts(self) -> tuple[int, Any]:
        return 200, self.source.rollouts_document()

    def rollout_action(self, rest: bytes) -> tuple[int, Any]:
        """POST /rollouts/ROUTE/ACTION: status, promote, promote_full, pause, resume, abort, retry."""
        route, _, action = rest.decode("latin-1").rpartition("/")
        if not route or not action:
            return 404, {"error": "use POST /rollouts/ROUTE/ACTION"}
        return 200, self.source.rollout_command(unquote(route), action)

    async def reload(self) -> tuple[int, Any]:
        problems = self.source.reload()
        if problems:
            return 400, {"reloaded": False, "problems": problems}
        return 200, {"reloaded": True}
