"""Responses graylane writes itself: error answers and interim lines, precomputed where possible."""

from __future__ import annotations

import json
from http import HTTPStatus

from proxy.errors import HttpError

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# What graylane itself allows when it is the final recipient (OPTIONS with Max-Forwards: 0).
ALLOW = b"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n"
ALLOW_WITH_TRACE = b"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE\r\n"
# Fields a TRACE echo leaves out (RFC 9110 9.3.8: they are likely to hold credentials).
_TRACE_HIDDEN = frozenset([b"authorization", b"proxy-authorization", b"cookie"])


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


def local_response(
    status: int, extra: bytes, content_type: bytes, body: bytes, request_id: bytes, close: bool
) -> bytes:
    """A complete response of graylane's own that is not an error; ``extra`` is header lines."""
    return b"".join(
        (
            status_line(status),
            extra,
            b"Content-Type: " + content_type + b"\r\n" if content_type else b"",
            b"Content-Length: %d\r\n" % len(body),
            b"X-Request-ID: %s\r\n" % request_id,
            b"Connection: close\r\n" if close else b"",
            b"\r\n",
            body,
        )
    )


def trace_echo(req: object) -> bytes:
    """The message/http body of a TRACE answer: the request head as received, credentials left out."""
    lines = [b"%s %s HTTP/1.%d\r\n" % (req.method, req.target, req.http_minor)]
    for name, value in req.headers:
        if name not in _TRACE_HIDDEN:
            lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


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
