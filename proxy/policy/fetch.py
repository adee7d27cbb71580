"""A small asynchronous HTTP GET over asyncio streams, for documents such as a JWKS.

One request per connection (``Connection: close``), the response parsed by httptools
(Content-Length, chunked, or ended by the close), at most ``max_bytes`` of body, the
whole exchange bounded by ``timeout``. Only a 200 is a success; redirects are not
followed (a JWKS URL is configured exactly).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools

USER_AGENT = b"graylane"


class FetchError(Exception):
    """The document could not be fetched; the message says why, for a log line."""


def parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path-and-query) of an http(s) URL; ValueError when it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)  # .port raises ValueError if bad
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port, path


class _Response:
    """httptools callbacks collecting one response."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False
        self.framed = False  # Content-Length or Transfer-Encoding: the close does not end the body

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise FetchError(f"the body is larger than {self.max_bytes} bytes")
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


async def fetch_url(
    url: str, *, timeout: float, max_bytes: int = 1 << 20, ssl_context: ssl.SSLContext | None = None
) -> bytes:
    """The body of ``GET url``; FetchError for anything but a complete 200 in time."""
    try:
        scheme, host, port, path = parse_url(url)
    except ValueError as exc:
        raise FetchError(str(exc)) from None
    tls = None
    if scheme == "https":
        tls = ssl_context if ssl_context is not None else ssl.create_default_context()
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(host, port, path, tls, max_bytes)
    except TimeoutError:
        raise FetchError(f"no complete answer within {timeout:g}s") from None
    except (OSError, ssl.SSLError) as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from None
    except httptools.HttpParserError as exc:
        raise FetchError(f"bad HTTP response: {exc}") from None


async def _exchange(host: str, port: int, path: str, tls: ssl.SSLContext | None, max_bytes: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None)
    try:
        authority = host if ":" not in host else f"[{host}]"
        default_port = 443 if tls else 80
        if port != default_port:
            authority += f":{port}"
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\nUser-Agent: %s\r\n"
            b"Connection: close\r\n\r\n" % (path.encode("ascii"), authority.encode("idna"), USER_AGENT)
        )
        response = _Response(max_bytes)
        parser = httptools.HttpResponseParser(response)
        while not response.complete:
            data = await reader.read(65536)
            if not data:
                break
            try:
                parser.feed_data(data)
            except httptools.HttpParserCallbackError as exc:  # our callback refused (too large)
                raise FetchError(str(exc.__context__ or exc)) from None
        status = parser.get_status_code()
        if not response.complete and (status == 0 or response.framed):
            # Only a body without Content-Length or chunked framing is ended by the close.
            raise FetchError("the connection closed before the response was complete")
        if status != 200:
            raise FetchError(f"HTTP status {status}")
        return b"".join(response.body)
    finally:
        writer.close()
