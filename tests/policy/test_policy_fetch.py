"""The asynchronous GET used for JWKS URLs, against raw responses from a local server."""

from __future__ import annotations

import asyncio

import pytest
from policy_support import DocumentServer, response

from proxy.policy.fetch import FetchError, fetch_url, parse_url

pytestmark = pytest.mark.integration

BODY = b'{"keys": []}'


def fetch(raw: bytes | None, *, timeout: float = 5.0, max_bytes: int = 1 << 20) -> bytes:
    async def scenario() -> bytes:
        async with DocumentServer(lambda: raw) as server:
            return await fetch_url(server.url(), timeout=timeout, max_bytes=max_bytes)

    return asyncio.run(scenario())


def test_a_response_with_content_length() -> None:
    assert fetch(response(200, BODY)) == BODY


def test_a_chunked_response() -> None:
    raw = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"key\r\n7\r\ns": []}\r\n0\r\n\r\n'
    assert fetch(raw) == BODY


def test_a_response_ended_by_the_close() -> None:
    assert fetch(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY) == BODY


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (response(404, b"no"), "HTTP status 404"),
        (response(200, BODY)[:-3], "closed before the response was complete"),
        (b"garbage\r\n\r\n", "bad HTTP response"),
        (b"", "closed before"),
    ],
)
def test_failures_say_why(raw: bytes, why: str) -> None:
    with pytest.raises(FetchError, match=why):
        fetch(raw)


def test_a_body_too_large_is_refused() -> None:
    with pytest.raises(FetchError, match="larger than 100 bytes"):
        fetch(response(200, b"x" * 1000), max_bytes=100)


def test_a_server_that_never_answers_times_out() -> None:
    with pytest.raises(FetchError, match="no complete answer within 0.2s"):
        fetch(None, timeout=0.2)


def test_nothing_listening() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(FetchError, match="ConnectionRefusedError"):
            await fetch_url(f"http://127.0.0.1:{port}/jwks", timeout=5)

    asyncio.run(scenario())


def test_parse_url() -> None:
    assert parse_url("https://idp.test/.well-known/jwks.json?x=1") == (
        "https", "idp.test", 443, "/.well-known/jwks.json?x=1"
    )  # fmt: skip
    assert parse_url("http://[::1]:8080") == ("http", "::1", 8080, "/")
    for bad in ("ftp://x/", "http:///path", "idp.test/jwks"):
        with pytest.raises(ValueError):
            parse_url(bad)
