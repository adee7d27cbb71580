"""Listening sockets and the accept loop.

graylane accepts connections itself (a reader on the listening socket) instead of
letting the event loop's server do it, so that accepting can pause when
``max_connections`` client connections are open: further clients wait in the
kernel's backlog instead of being accepted and starved, and accepting resumes as
soon as connections close.
"""

from __future__ import annotations

import logging
import socket
import ssl

from proxy.config.schema import Listener as ListenerConfig
from proxy.errors import StartupError
from proxy.http.context import ServerContext
from proxy.http.downstream import Downstream

log = logging.getLogger("graylane")

ACCEPTS_PER_WAKEUP = 64
BACKLOG = 1024


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
        limit = ctx.limits.max_connections
        loop = ctx.loop
        for _ in range(ACCEPTS_PER_WAKEUP):
            if len(ctx.connections) + ctx.accepting >= limit:
                ctx.stats.accept_paused += 1
                self.pause()
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: stop for now; a closing connection resumes us.
                log.warning("accept failed on %s: %s", self.bound, exc.strerror or exc)
                self.pause()
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ctx.accepting += 1
            loop.create_task(self._connect(conn))

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
