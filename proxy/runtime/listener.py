"""Listening sockets and the accept loop.

graylane accepts connections itself (a reader on the listening socket) instead of
letting the event loop's server do it, so that it decides what happens at the
connection cap (``ctx.max_clients``: limits.max_connections bounded by the
descriptors the process has, proxy.runtime.fdcap). There it first closes the
longest idle connections (no request in flight) to make room, so that a flood of
connections that never send a byte cannot lock real clients out; only when every
connection has a request in flight does accepting pause: further clients wait in
the kernel's backlog instead of being accepted and starved, and accepting resumes
as soon as connections close. Reaching the cap is logged and counted once per
episode (an episode ends when the cap has not been met for EPISODE_GAP seconds).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import time

from proxy.config.schema import Listener as ListenerConfig
from proxy.errors import StartupError
from proxy.http.context import ServerContext
from proxy.http.downstream import Downstream

log = logging.getLogger("graylane")

ACCEPTS_PER_WAKEUP = 64
BACKLOG = 1024
EVICT_SHARE = 16  # at the cap, close 1/16 of the cap's worth of idle connections at once (one scan)
EPISODE_GAP = 10.0
RETRY_AFTER_EMFILE = 0.01  # seconds: evicted descriptors are released when the loop closes them


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def open_socket(address: str, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A bound (and, unless ``listen`` is False, listening) non-blocking socket for ``address``."""
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        if listen:
            sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return context


class Acceptor:
    """Accepts connections on one listening socket into ``Downstream`` protocols."""

    def __init__(self, ctx: ServerContext, config: ListenerConfig, sock: socket.socket) -> None:
        self.ctx = ctx
        self.config = config
        self.sock = sock
        self.ssl = tls_context(config.tls.cert, config.tls.key) if config.tls else None
        self.scheme = b"https" if self.ssl else b"http"
        self.reading = False
        self.closed = False
        self.cap_seen = -EPISODE_GAP  # when the cap was last met (time.monotonic())

    def _factory(self) -> Downstream:
        return Downstream(self.ctx, self.scheme)

    @property
    def bound(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        if not self.reading and not self.closed:
            self.ctx.loop.add_reader(self.sock.fileno(), self._on_readable)
            self.reading = True

    def pause(self) -> None:
        if self.reading:
            self.ctx.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def close(self) -> None:
        self.pause()
        if not self.closed:
            self.closed = True
            self.sock.close()

    def _on_readable(self) -> None:
        ctx = self.ctx
        limit = ctx.max_clients
        loop = ctx.loop
        for _ in range(ACCEPTS_PER_WAKEUP):
            if len(ctx.connections) + ctx.accepting >= limit:
                if not self._pending():
                    return  # nobody is waiting: close nothing; the reader fires when one comes
                if not self._make_room(limit):
                    ctx.stats.accept_paused += 1
                    self.pause()
                    return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends (descriptors used elsewhere): make room if there are idle
                # connections and try again shortly, else wait for a connection to close.
                log.warning("accept failed on %s: %s", self.bound, exc.strerror or exc)
                self.pause()
                if self._make_room(limit):
                    loop.call_later(RETRY_AFTER_EMFILE, self.start)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx.accepting += 1
            loop.create_task(self._connect(conn))

    def _pending(self) -> bool:
        """Whether a connection waits in the backlog (asked only at the cap)."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def _make_room(self, limit: int) -> bool:
        """At the cap: close some idle connections; whether any was closed."""
        ctx = self.ctx
        now = time.monotonic()
        if now - self.cap_seen > EPISODE_GAP:
            ctx.stats.connection_cap_reached += 1
            log.warning("%d client connections (the cap): closing the longest idle ones to make room", limit)
        self.cap_seen = now
        return ctx.evict_idle(max(1, limit // EVICT_SHARE)) > 0

    async def _connect(self, conn: socket.socket) -> None:
        ctx = self.ctx
        factory = self._factory
        failed = False
        try:
            if self.ssl is None:
                await ctx.loop.connect_accepted_socket(factory, conn)
            else:
                await ctx.loop.connect_accepted_socket(factory, conn, ssl=self.ssl, ssl_handshake_timeout=10)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.debug("connection setup failed: %s", exc)
            conn.close()
            failed = True
        finally:
            ctx.accepting -= 1
        if failed and ctx.on_connection_closed is not None:
            # No Downstream will report this one closing: resume a paused accept here.
            ctx.on_connection_closed()
