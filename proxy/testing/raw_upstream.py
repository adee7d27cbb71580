"""A bare listening socket standing in for an upstream, for tests that script its bytes."""

from __future__ import annotations

import socket

TIMEOUT = 5.0
MAX_READS = 100_000  # each recv waits at most the socket timeout, so this bounds the wait


def listen() -> socket.socket:
    """A listening socket on a free loopback port; every wait on it is bounded."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(TIMEOUT)
    return srv


def accept(srv: socket.socket) -> socket.socket:
    conn, _ = srv.accept()
    conn.settimeout(TIMEOUT)
    return conn


def read_until(
    conn: socket.socket, marker: bytes = b"\r\n\r\n", data: bytes = b"", *, allow_close: bool = False
) -> bytes:
    """Read until ``marker`` is in what was read (``data`` first); a close before it raises,
    or with ``allow_close`` returns what came."""
    for _ in range(MAX_READS):
        if marker in data:
            return data
        more = conn.recv(65536)
        if not more:
            if allow_close:
                return data
            raise AssertionError(f"closed before {marker!r}: {data[-200:]!r}")
        data += more
    raise AssertionError(f"{marker!r} never came: {data[-200:]!r}")


def read_at_least(conn: socket.socket, data: bytes, size: int) -> bytes:
    """Read until ``data`` holds ``size`` bytes."""
    for _ in range(MAX_READS):
        if len(data) >= size:
            return data
        more = conn.recv(65536)
        if not more:
            raise AssertionError(f"closed after {len(data)} of {size} bytes")
        data += more
    raise AssertionError(f"only {len(data)} of {size} bytes came")
