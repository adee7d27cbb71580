"""Parsed request heads for tests of routing and policies, made by the real parser."""

from __future__ import annotations

from collections.abc import Iterable

from proxy._fast import http1
from proxy.http.request import RequestHead


def request_head(
    path: bytes = b"/",
    host: bytes = b"shop.test",
    headers: Iterable[tuple[bytes, bytes]] = (),
    method: bytes = b"GET",
) -> RequestHead:
    """``method path`` with a Host and ``headers``, as ``parse_request_head`` gives it to the data plane."""
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (method, path, host, lines)
    return http1.parse_request_head(head, 8192, 100)
