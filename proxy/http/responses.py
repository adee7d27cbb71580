"""Responses graylane writes itself: error answers and interim lines, precomputed where possible."""

from __future__ import annotations

import json
from http import HTTPStatus

from proxy.errors import HttpError

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


# Status line prefixes for every status a proxy answers with itself.
_STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, _reason(code)) for code in range(100, 600)}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def error_response(error: HttpError, request_id: bytes, close: bool, head_only: bool = False) -> bytes:
    """A complete error response with a small JSON body naming the request id."""
    status = error.status
    extra = getattr(error, "headers", b"")  # a policy's lines: WWW-Authenticate, Retry-After...
    reason = b""
    if extra:  # a policy's answer (401, 429): its short reason goes in the body too
        reason = b',"reason":' + json.dumps(error.reason).encode()
    body = b'{"error":"%s","status":%d,"request_id":"%s"%s}\n' % (
        _reason(status).lower().replace(b" ", b"_"),
        status,
        request_id,
        reason,
    )
    head = b"".join(
        (
            status_line(status),
            extra,
            b"Content-Type: application/json\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"X-Request-ID: %s\r\n" % request_id,
            b"Connection: close\r\n" if close else b"",
            b"\r\n",
        )
    )
    return head if head_only else head + body
