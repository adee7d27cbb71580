"""What the data plane knows about one request once its head has been parsed.

``RequestHead`` is produced by the head parser (``proxy._fast.http1``) and read by
routing; it holds bytes exactly as they came (header names lower-cased, values
stripped of surrounding whitespace).
"""

from __future__ import annotations


class RequestHead:
    __slots__ = (
        "method",  # bytes, e.g. b"GET"
        "target",  # bytes, the raw request-target
        "path",  # bytes, target up to "?" (origin-form; absolute-form is reduced to its path)
        "query",  # bytes, after "?" without it; b"" when absent
        "http_minor",  # 0 for HTTP/1.0, 1 for HTTP/1.1
        "headers",  # list[tuple[bytes, bytes]]: (lower-case name, value), in order
        "host",  # bytes | None: the Host header (or the authority of an absolute-form target)
        "content_length",  # int: -1 when the request has no Content-Length
        "chunked",  # bool: Transfer-Encoding: chunked
        "keep_alive",  # bool: the client wants the connection kept after this exchange
        "upgrade",  # bytes | None: the Upgrade header's value when Connection names upgrade
        "expect_continue",  # bool: Expect: 100-continue
        "forward_headers",  # bytes: the header lines to forward, hop-by-hop ones removed, each ending CRLF
        "xff",  # bytes | None: the client's X-Forwarded-For value (removed from forward_headers)
        "request_id",  # bytes | None: the client's X-Request-ID value
        "traceparent",  # bytes | None: the client's traceparent (removed from forward_headers)
    )

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lower-case bytes), in order."""
        return [value for key, value in self.headers if key == name]
