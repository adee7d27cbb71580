"""Tools graylane's own tests use: a real origin server, a raw client, the proxy as a process.

- ``Backend``: an HTTP/1.1 origin server with scripted behaviours by path, recording
  every request (``proxy.testing.backend``; also ``python -m proxy.testing.backend``).
- ``RawClient`` / ``request``: a strict raw-socket HTTP/1.1 client (``proxy.testing.client``).
- ``GraylaneProcess``: ``python -m proxy run`` as a child process (``proxy.testing.process``).
"""

from __future__ import annotations

import socket

from proxy.testing.backend import Backend, RecordedRequest, pattern_bytes
from proxy.testing.client import BadResponse, PeerClosed, RawClient, Response, build_request, request
from proxy.testing.process import GraylaneProcess, ProcessStartError, poll_until

__all__ = [
    "Backend",
    "BadResponse",
    "GraylaneProcess",
    "PeerClosed",
    "ProcessStartError",
    "RawClient",
    "RecordedRequest",
    "Response",
    "build_request",
    "free_port",
    "pattern_bytes",
    "poll_until",
    "request",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (another process may take it: prefer port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
