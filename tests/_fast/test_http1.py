"""proxy._fast.http1: request and response heads, chunked framing (no sockets).

Every test runs on both forms: the pure-Python twin and, when it is built, the
compiled extension. Raw messages are written out as bytes constants; chunked
bodies are fed at every split point, because the data plane receives them in
whatever pieces TCP delivers.
"""

from __future__ import annotations

import pytest

from proxy._fast import compiled, pure
from proxy.errors import (
    BadRequest,
    HeaderTooLarge,
    UpstreamProtocolError,
    UriTooLong,
    VersionNotSupported,
)

TWIN = pure("http1")
FAST = compiled("http1")
FORMS = [pytest.param(TWIN, id="pure")] + ([pytest.param(FAST, id="compiled")] if FAST is not None else [])

MAX_URI = 1024
MAX_HEADERS = 20


@pytest.fixture(params=FORMS)
def h1(request):
    return request.param


def head(*lines: bytes) -> bytes:
    """A complete message head from its lines (start line first)."""
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse(h1, raw: bytes):
    return h1.parse_request_head(raw, MAX_URI, MAX_HEADERS)


# --- requests: what is extracted ------------------------------------------------------

GET = (
    b"GET /items/7?color=red&size=2 HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n"
)


def test_get_origin_form(h1):
    req = parse(h1, GET)
    assert req.method == b"GET"
    assert req.target == b"/items/7?color=red&size=2"
    assert req.path == b"/items/7"
    assert req.query == b"color=red&size=2"
    assert req.http_minor == 1
    assert req.host == b"shop.example"
    assert req.headers == [(b"host", b"shop.example"), (b"accept", b"*/*"), (b"user-agent", b"t/1")]
    assert req.content_length == -1
    assert req.chunked is False
    assert req.keep_alive is True
    assert req.upgrade is None
    assert req.expect_continue is False
    assert req.xff is None
    assert req.request_id is None
    assert req.forward_headers == b"Host: shop.example\r\nAccept: */*\r\nUser-Agent: t/1\r\n"
    assert req.header(b"accept") == b"*/*"
    assert req.header(b"missing") is None


def test_post_with_content_length(h1):
    raw = head(b"POST /orders HTTP/1.1", b"Host: a", b"Content-Type: application/json", b"Content-Length: 17")
    req = parse(h1, raw)
    assert req.method == b"POST"
    assert req.path == b"/orders"
    assert req.query == b""
    assert req.content_length == 17
    assert req.chunked is False


def test_post_chunked(h1):
    raw = head(b"POST /up HTTP/1.1", b"Host: a", b"Transfer-Encoding: Chunked")
    req = parse(h1, raw)
    assert req.chunked is True
    assert req.content_length == -1
    # Transfer-Encoding is hop-by-hop: the data plane adds its own line.
    assert req.forward_headers == b"Host: a\r\n"


def test_content_length_zero_and_leading_zeros(h1):
    assert parse(h1, head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 0")).content_length == 0
    assert parse(h1, head(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 007")).content_length == 7


def test_repeated_equal_content_length_is_merged_into_one_line(h1):
    raw = head(b"POST / HTTP/1.1", b"Content-Length: 5, 5", b"Host: a", b"Content-Length: 5", b"X: y")
    req = parse(h1, raw)
    assert req.content_length == 5
    assert req.forward_headers == b"Content-Length: 5\r\nHost: a\r\nX: y\r\n"


@pytest.mark.parametrize(
    ("target", "host", "path", "query"),
    [
        (b"http://api.example:8080/v1/users?id=3", b"api.example:8080", b"/v1/users", b"id=3"),
        (b"HTTPS://api.example/x", b"api.example", b"/x", b""),
        (b"http://api.example", b"api.example", b"/", b""),
        (b"http://api.example?q=1", b"api.example", b"/", b"q=1"),
        (b"http://[::1]:9/p", b"[::1]:9", b"/p", b""),
    ],
)
def test_absolute_form_takes_host_from_the_target(h1, target, host, path, query):
    req = parse(h1, head(b"GET " + target + b" HTTP/1.1", b"Accept: */*", b"Host: ignored.example"))
    assert req.target == target
    assert req.host == host
    assert req.path == path
    assert req.query == query
    # RFC 9112 3.2.2: the authority overrides Host, for the upstream as for routing.
    assert req.forward_headers == b"Host: " + host + b"\r\nAccept: */*\r\n"
    assert req.header(b"host") == b"ignored.example"  # the received header stays visible


def test_absolute_form_in_http10_without_host_gets_one(h1):
    req = parse(h1, head(b"GET http://api.example/x HTTP/1.0", b"Accept: */*"))
    assert req.host == b"api.example"
    assert req.forward_headers == b"Host: api.example\r\nAccept: */*\r\n"


def test_options_asterisk(h1):
    req = parse(h1, head(b"OPTIONS * HTTP/1.1", b"Host: a"))
    assert req.method == b"OPTIONS"
    assert req.target == b"*"
    assert req.path == b"*"
    assert req.query == b""


def test_asterisk_is_only_for_options(h1):
    with pytest.raises(BadRequest, match="invalid request-target"):
        parse(h1, head(b"GET * HTTP/1.1", b"Host: a"))


def test_http10_without_host(h1):
    req = parse(h1, head(b"GET /old HTTP/1.0"))
    assert req.http_minor == 0
    assert req.host is None
    assert req.keep_alive is False
    assert req.forward_headers == b""


def test_empty_host_is_allowed(h1):
    # RFC 9110 7.2: an empty Host is valid when the target has no authority.
    assert parse(h1, head(b"GET / HTTP/1.1", b"Host:")).host == b""


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"HTTP/1.1", [], True),
        (b"HTTP/1.1", [b"Connection: close"], False),
        (b"HTTP/1.1", [b"Connection: Close"], False),
        (b"HTTP/1.1", [b"Connection: keep-alive"], True),
        (b"HTTP/1.1", [b"Connection: keep-alive, close"], False),
        (b"HTTP/1.1", [b"Connection: x-trace", b"Connection: close"], False),
        (b"HTTP/1.0", [], False),
        (b"HTTP/1.0", [b"Connection: keep-alive"], True),
        (b"HTTP/1.0", [b"Connection: Keep-Alive"], True),
        (b"HTTP/1.0", [b"Connection: keep-alive", b"Connection: close"], False),
        (b"HTTP/1.0", [b"Connection: close"], False),
    ],
)
def test_keep_alive(h1, version, connection, keep_alive):
    req = parse(h1, head(b"GET / " + version, b"Host: a", *connection))
    assert req.keep_alive is keep_alive
    assert req.forward_headers == b"Host: a\r\n"


def test_upgrade_needs_connection_upgrade(h1):
    raw = head(
        b"GET /ws HTTP/1.1", b"Host: a", b"Connection: keep-alive, Upgrade", b"Upgrade: websocket", b"B: 1"
    )
    req = parse(h1, raw)
    assert req.upgrade == b"websocket"
    assert req.keep_alive is True
    assert req.forward_headers == b"Host: a\r\nB: 1\r\n"

    plain = parse(h1, head(b"GET /ws HTTP/1.1", b"Host: a", b"Upgrade: websocket"))
    assert plain.upgrade is None
    assert plain.forward_headers == b"Host: a\r\n"  # never forwarded without Connection: upgrade


def test_upgrade_is_ignored_in_http10(h1):
    # RFC 9110 7.8: a server must ignore Upgrade in an HTTP/1.0 request.
    req = parse(h1, head(b"GET /ws HTTP/1.0", b"Connection: upgrade", b"Upgrade: websocket"))
    assert req.upgrade is None


@pytest.mark.parametrize(
    ("value", "expected"), [(b"100-continue", True), (b"100-Continue", True), (b"x", False)]
)
def test_expect(h1, value, expected):
    req = parse(h1, head(b"PUT /f HTTP/1.1", b"Host: a", b"Expect: " + value, b"Content-Length: 3"))
    assert req.expect_continue is expected
    assert req.forward_headers == b"Host: a\r\nContent-Length: 3\r\n"


def test_x_forwarded_for_is_collected_and_removed(h1):
    raw = head(
        b"GET / HTTP/1.1",
        b"X-Forwarded-For: 10.0.0.1, 10.0.0.2",
        b"Host: a",
        b"x-forwarded-for:10.0.0.3",
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-Host: spoofed",
        b"Accept: */*",
    )
    req = parse(h1, raw)
    assert req.xff == b"10.0.0.1, 10.0.0.2, 10.0.0.3"
    # The client's own X-Forwarded-* never pass: the data plane writes them.
    assert req.forward_headers == b"Host: a\r\nAccept: */*\r\n"
    assert req.header_values(b"x-forwarded-for") == [b"10.0.0.1, 10.0.0.2", b"10.0.0.3"]


def test_forward_headers_is_the_raw_block_when_nothing_is_dropped(h1):
    block = b"Host: a\r\nX-Odd-Case:  spaced value\t\r\ncookie: a=1; b=2\r\nX-Request-ID: r-1\r\nX-Empty:\r\n"
    raw = b"GET /p HTTP/1.1\r\n" + block + b"\r\n"
    req = parse(h1, raw)
    assert req.forward_headers == block
    assert req.request_id == b"r-1"
    assert req.headers[1] == (b"x-odd-case", b"spaced value")


def test_first_request_id_wins(h1):
    req = parse(h1, head(b"GET / HTTP/1.1", b"Host: a", b"X-Request-ID: one", b"X-Request-ID: two"))
    assert req.request_id == b"one"


def test_headers_named_by_connection_are_removed(h1):
    raw = head(
        b"GET / HTTP/1.1",
        b"Host: a",
        b"Connection: X-Trace, keep-alive",
        b"x-trace: 1",
        b"Keep-Alive: timeout=5",
        b"TE: trailers",
        b"Trailer: X-Sum",
        b"Proxy-Connection: keep-alive",
        b"X-Kept: 2",
    )
    req = parse(h1, raw)
    assert req.forward_headers == b"Host: a\r\nX-Kept: 2\r\n"
    # Routing still sees every header as received.
    assert req.header(b"x-trace") == b"1"


@pytest.mark.parametrize("named", [b"Host", b"content-length"])
def test_connection_may_not_name_end_to_end_headers(h1, named):
    with pytest.raises(BadRequest, match="Connection names an end-to-end header"):
        parse(h1, head(b"GET / HTTP/1.1", b"Host: a", b"Connection: " + named))


# --- requests: what is refused ------------------------------------------------------------

LONG_TARGET = b"/" + b"a" * MAX_URI
ONLY_CHUNKED = "unsupported Transfer-Encoding (only a single chunked is accepted)"
DIFFERING = "differing Content-Length values"
BAD_LENGTH = "malformed Content-Length"
BAD_TARGET = "invalid request-target"
BARE = "bare CR or LF in message head"


def post(*lines: bytes) -> bytes:
    return head(b"POST / HTTP/1.1", b"Host: a", *lines)


def get(*lines: bytes) -> bytes:
    return head(b"GET / HTTP/1.1", b"Host: a", *lines)


def line(request_line: bytes) -> bytes:
    return head(request_line, b"Host: a")


REQUEST_ERRORS = [
    # framing
    (post(b"Transfer-Encoding: chunked", b"Content-Length: 3"), BadRequest,
     "both Transfer-Encoding and Content-Length"),
    (post(b"Content-Length: 5", b"Content-Length: 6"), BadRequest, DIFFERING),
    (post(b"Content-Length: 5, 6"), BadRequest, DIFFERING),
    (post(b"Content-Length: -1"), BadRequest, BAD_LENGTH),
    (post(b"Content-Length: 1e3"), BadRequest, BAD_LENGTH),
    (post(b"Content-Length: 0x10"), BadRequest, BAD_LENGTH),
    (post(b"Content-Length:  +5"), BadRequest, BAD_LENGTH),
    (post(b"Content-Length:"), BadRequest, BAD_LENGTH),
    (post(b"Content-Length: 5,"), BadRequest, BAD_LENGTH),
    (post(b"Content-Length: 1234567890123456789"), BadRequest, BAD_LENGTH),
    (post(b"Transfer-Encoding: gzip"), BadRequest, ONLY_CHUNKED),
    (post(b"Transfer-Encoding: chunked, gzip"), BadRequest, ONLY_CHUNKED),
    (post(b"Transfer-Encoding: identity"), BadRequest, ONLY_CHUNKED),
    (post(b"Transfer-Encoding: chunked, chunked"), BadRequest, ONLY_CHUNKED),
    (post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), BadRequest, ONLY_CHUNKED),
    (post(b"Transfer-Encoding:"), BadRequest, ONLY_CHUNKED),
    (head(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked"), BadRequest,
     "Transfer-Encoding in an HTTP/1.0 request"),
    # header lines
    (get(b"X-Long: one", b" two"), BadRequest, "obsolete line folding in header"),
    (get(b"X-Long: one", b"\ttwo"), BadRequest, "obsolete line folding in header"),
    (head(b"GET / HTTP/1.1", b" Host: a"), BadRequest, "invalid header name"),
    (head(b"GET / HTTP/1.1", b"Host : a"), BadRequest, "invalid header name"),
    (head(b"GET / HTTP/1.1", b"Host\t: a"), BadRequest, "invalid header name"),
    (get(b"X(y): 1"), BadRequest, "invalid header name"),
    (get(b": nameless"), BadRequest, "header line without a name"),
    (get(b"no colon"), BadRequest, "header line without a name"),
    (get(b"X: a\rb"), BadRequest, BARE),
    (get(b"X: a\nb"), BadRequest, BARE),
    (get(b"X: a\x00b"), BadRequest, "NUL in message head"),
    (get(b"X\x00: ab"), BadRequest, "NUL in message head"),
    (get(b"X\r: ab"), BadRequest, BARE),
    (get(b"X\n: ab"), BadRequest, BARE),
    (get(b"X: a\x01b"), BadRequest, "invalid character in header value"),
    (get(b"X: a\x7f"), BadRequest, "invalid character in header value"),
    (b"GET / HTTP/1.1\nHost: a\r\n\r\n", BadRequest, BARE),
    (b"GET / HTTP/1.1\r\nHost: a\r\n", BadRequest, "incomplete message head"),
    # request line
    (line(b"GE T / HTTP/1.1"), BadRequest, "malformed request line"),
    (line(b"G(T / HTTP/1.1"), BadRequest, "invalid method"),
    (line(b"GET\t/ HTTP/1.1"), BadRequest, "malformed request line"),
    (line(b"GET  / HTTP/1.1"), BadRequest, "malformed request line"),
    (line(b" / HTTP/1.1"), BadRequest, "invalid method"),
    (line(b"GET / HTTP/1.1 "), BadRequest, "malformed request line"),
    (line(b"GET /a b HTTP/1.1"), BadRequest, "malformed request line"),
    (line(b"GET /a\x01 HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET /a\x7f HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET /caf\xc3\xa9 HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET /a#frag HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET http//x HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET x/y HTTP/1.1"), BadRequest, BAD_TARGET),
    (head(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"), BadRequest, BAD_TARGET),
    (line(b"GET http:///x HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET http://user@evil/ HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET http://a\\b/ HTTP/1.1"), BadRequest, BAD_TARGET),
    (line(b"GET / HTTP/1.2"), VersionNotSupported, "HTTP version not supported"),
    (line(b"GET / HTTP/2.0"), VersionNotSupported, "HTTP version not supported"),
    (line(b"GET / HTTP/x"), BadRequest, "malformed HTTP version"),
    (line(b"GET / http/1.1"), BadRequest, "malformed HTTP version"),
    (line(b"GET / HTTP/1.10"), BadRequest, "malformed HTTP version"),
    (head(b"GET /"), BadRequest, "malformed request line"),
    # Host
    (head(b"GET / HTTP/1.1", b"Accept: */*"), BadRequest, "missing Host header"),
    (get(b"Host: b"), BadRequest, "more than one Host header"),
    (get(b"host: a"), BadRequest, "more than one Host header"),
    (head(b"GET / HTTP/1.1", b"Host: a b"), BadRequest, "invalid Host header"),
    (head(b"GET / HTTP/1.1", b"Host: a/b"), BadRequest, "invalid Host header"),
    (head(b"GET / HTTP/1.1", b"Host: user@a"), BadRequest, "invalid Host header"),
    # limits
    (line(b"GET " + LONG_TARGET + b" HTTP/1.1"), UriTooLong, "request-target too long"),
    (line(b"GET " + LONG_TARGET + b" HTTP/1.1 x"), UriTooLong, "request-target too long"),
    (get(*[b"X-%d: v" % i for i in range(MAX_HEADERS)]), HeaderTooLarge, "too many header fields"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "error", "message"), REQUEST_ERRORS, ids=[repr(r[0][:48]) for r in REQUEST_ERRORS]
)
def test_malformed_request_heads_are_refused(h1, raw, error, message):
    with pytest.raises(error) as caught:
        parse(h1, raw)
    assert type(caught.value) is error
    assert str(caught.value) == message
    assert caught.value.close is True


def test_limits_are_inclusive(h1):
    target = b"/" + b"a" * (MAX_URI - 1)
    assert parse(h1, head(b"GET " + target + b" HTTP/1.1", b"Host: a")).target == target
    lines = [b"X-%d: v" % i for i in range(MAX_HEADERS - 1)]
    assert len(parse(h1, head(b"GET / HTTP/1.1", b"Host: a", *lines)).headers) == MAX_HEADERS


# --- responses ------------------------------------------------------------------------------


def rparse(h1, raw: bytes):
    return h1.parse_response_head(raw, MAX_HEADERS)


def test_response_with_content_length_is_verbatim(h1):
    block = b"Content-Type: text/plain\r\nContent-Length: 12\r\nX-Odd:  v \r\n"
    resp = rparse(h1, b"HTTP/1.1 200 OK\r\n" + block + b"\r\n")
    assert resp.status == 200
    assert resp.http_minor == 1
    assert resp.reason == b"OK"
    assert resp.content_length == 12
    assert resp.chunked is False
    assert resp.keep_alive is True
    assert resp.upgrade is None
    assert resp.verbatim is True
    assert resp.forward_headers == block
    assert resp.headers == [(b"content-type", b"text/plain"), (b"content-length", b"12"), (b"x-odd", b"v")]


def test_chunked_response_drops_hop_by_hop_lines(h1):
    raw = head(
        b"HTTP/1.1 201 Created", b"Transfer-Encoding: chunked", b"Connection: X-Hop", b"X-Hop: 1", b"A: b"
    )
    resp = rparse(h1, raw)
    assert resp.status == 201
    assert resp.chunked is True
    assert resp.content_length == -1
    assert resp.keep_alive is True
    assert resp.verbatim is False
    assert resp.forward_headers == b"A: b\r\n"


@pytest.mark.parametrize(
    ("lines", "keep_alive"),
    [
        ([b"HTTP/1.1 200 OK"], True),
        ([b"HTTP/1.1 200 OK", b"Connection: close"], False),
        ([b"HTTP/1.0 200 OK"], False),
        ([b"HTTP/1.0 200 OK", b"Connection: keep-alive"], True),
        ([b"HTTP/1.0 200 OK", b"Connection: Keep-Alive, close"], False),
    ],
)
def test_response_keep_alive(h1, lines, keep_alive):
    resp = rparse(h1, head(*lines, b"Content-Length: 0"))
    assert resp.keep_alive is keep_alive
    assert resp.forward_headers == b"Content-Length: 0\r\n"
    assert resp.verbatim is (len(lines) == 1)


def test_response_without_framing_and_without_reason(h1):
    resp = rparse(h1, b"HTTP/1.0 404\r\n\r\n")
    assert resp.status == 404
    assert resp.http_minor == 0
    assert resp.reason == b""
    assert resp.content_length == -1
    assert resp.chunked is False
    assert resp.forward_headers == b""
    assert resp.verbatim is True


def test_switching_protocols(h1):
    resp = rparse(
        h1, head(b"HTTP/1.1 101 Switching Protocols", b"Connection: Upgrade", b"Upgrade: websocket")
    )
    assert resp.status == 101
    assert resp.upgrade == b"websocket"
    assert resp.forward_headers == b""


def test_interim_response(h1):
    resp = rparse(h1, head(b"HTTP/1.1 103 Early Hints", b"Link: </s.css>; rel=preload"))
    assert resp.status == 103
    assert resp.reason == b"Early Hints"
    assert resp.forward_headers == b"Link: </s.css>; rel=preload\r\n"


def test_response_repeated_content_length_is_merged(h1):
    resp = rparse(h1, head(b"HTTP/1.1 200 OK", b"Content-Length: 3", b"Server: s", b"Content-Length: 3, 3"))
    assert resp.content_length == 3
    assert resp.verbatim is False
    assert resp.forward_headers == b"Content-Length: 3\r\nServer: s\r\n"


RESPONSE_ERRORS = [
    (b"HELLO\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200OK\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1  200 OK\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1 20x OK\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1 600 High\r\n\r\n", "malformed status code"),
    (b"HTTP/1.1 200 O\x01K\r\n\r\n", "invalid character in reason phrase"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "unsupported HTTP version from upstream"),
    (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare CR or LF in message head"),
    (b"HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n", "NUL in message head"),
    (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", b"Content-Length: 3"),
     "both Transfer-Encoding and Content-Length from upstream"),
    (head(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip"), "unsupported Transfer-Encoding from upstream"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 3", b"Content-Length: 4"), "differing Content-Length values"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: 3, 4"), "differing Content-Length values"),
    (head(b"HTTP/1.1 200 OK", b"Content-Length: x"), "malformed Content-Length"),
    (head(b"HTTP/1.1 200 OK", b"X: a", b"\tb"), "obsolete line folding in header"),
    (head(b"HTTP/1.1 200 OK", b"X : a"), "invalid header name"),
    (head(b"HTTP/1.1 200 OK", b"Connection: content-length", b"Content-Length: 1"),
     "Connection names Content-Length"),
    (head(b"HTTP/1.1 200 OK", *[b"X-%d: v" % i for i in range(MAX_HEADERS + 1)]), "too many header fields"),
    (b"HTTP/1.1 200 OK\r\n", "incomplete message head"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "message"), RESPONSE_ERRORS, ids=[repr(r[0][:40]) for r in RESPONSE_ERRORS])
def test_malformed_response_heads_are_refused(h1, raw, message):
    with pytest.raises(UpstreamProtocolError) as caught:
        rparse(h1, raw)
    assert type(caught.value) is UpstreamProtocolError
    assert str(caught.value) == message
    assert caught.value.status == 502


# --- chunked bodies ----------------------------------------------------------------------------

PIPELINED = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"

# (stream, decoded body): each stream is one complete chunked body.
VALID_BODIES = [
    (b"0\r\n\r\n", b""),
    (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    (b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", b"0123456789abcdefghij"),
    (b'3;name=value\r\nabc\r\n2;a;b="q;x"\r\n\r\n\r\n0;last\r\n\r\n', b"abc\r\n"),
    (b"4\r\n\n\r\n\r\r\n0\r\nX-Sum: 9\r\nX-Other:\tv \r\n\r\n", b"\n\r\n\r"),
    (b"0000000000000003\r\nxyz\r\n0\r\n\r\n", b"xyz"),
    (b"1\r\n\x00\r\n00\r\n\r\n", b"\x00"),
]


def decode_in_pieces(h1, stream: bytes, cuts: list[int], error: type = BadRequest) -> tuple[bytes, int, bool]:
    """Feed ``stream`` cut at ``cuts``; the body, the bytes consumed, and whether it is done."""
    decoder = h1.ChunkedDecoder(error)
    body = []
    consumed = 0
    bounds = [0, *cuts, len(stream)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        pieces, used = decoder.feed(stream[start:stop])
        assert 0 <= used <= stop - start
        body.extend(pieces)
        consumed += used
        if used < stop - start:
            assert decoder.done  # only a finished body leaves bytes behind
    return b"".join(body), consumed, decoder.done


@pytest.mark.parametrize(("stream", "body"), VALID_BODIES)
def test_chunked_every_split_point(h1, stream, body):
    data = stream + PIPELINED
    for cut in range(len(data) + 1):
        assert decode_in_pieces(h1, data, [cut]) == (body, len(stream), True), cut


@pytest.mark.parametrize(("stream", "body"), VALID_BODIES)
def test_chunked_byte_by_byte(h1, stream, body):
    data = stream + PIPELINED
    assert decode_in_pieces(h1, data, list(range(1, len(data)))) == (body, len(stream), True)


def test_chunked_waits_for_more(h1):
    decoder = h1.ChunkedDecoder()
    assert decoder.feed(b"5\r\nhel") == ([b"hel"], 6)
    assert decoder.done is False
    assert decoder.feed(b"lo\r\n0\r\n") == ([b"lo"], 7)
    assert decoder.done is False  # the trailer section still has to end
    assert decoder.feed(b"\r\nGET") == ([], 2)
    assert decoder.done is True
    assert decoder.feed(b"more") == ([], 0)  # nothing after the end belongs to the body


# (stream, message): each fails with the same message wherever it is split.
INVALID_BODIES = [
    (b"zz\r\n", "invalid chunk size"),
    (b"-1\r\n", "invalid chunk size"),
    (b" 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    (b"5 \r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    (b"5\t;x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    (b"+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
    (b";x\r\n", "invalid chunk size"),
    (b"\r\n", "invalid chunk size"),
    (b"10000000000000000\r\n", "invalid chunk size"),
    (b"5;a\x01b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
    (b"5\r\nhelloXX\r\n0\r\n\r\n", "missing CRLF after chunk data"),
    (b"5\r\nhello\n0\r\n\r\n", "missing CRLF after chunk data"),
    (b"5\r\nhello\r0\r\n\r\n", "missing CRLF after chunk data"),
    (b"5\nhello\r\n0\r\n\r\n", "bare LF in chunked body"),
    (b"\n", "bare LF in chunked body"),
    (b"5\r\nhello\r\n0\n\r\n", "bare LF in chunked body"),
    (b"0\r\n\n", "bare LF in chunked body"),
    (b"0\r\nX-Sum: 1\n\r\n", "bare LF in chunked body"),
    (b"0\r\nno colon\r\n\r\n", "invalid trailer field"),
    (b"0\r\n folded: x\r\n\r\n", "invalid trailer field"),
    (b"0\r\nX: a\rb\r\n\r\n", "invalid trailer field"),
    (b"0\r\nX: a\x00b\r\n\r\n", "invalid trailer field"),
    (b"1;" + b"e" * 4100 + b"\r\nx\r\n0\r\n\r\n", "chunk line too long"),
    (b"0\r\n" + b"X-Big: " + b"v" * 4200 + b"\r\n\r\n", "chunk line too long"),
    (b"0\r\n" + (b"X-Big: " + b"v" * 4000 + b"\r\n") * 5 + b"\r\n", "chunked trailer too large"),
]


@pytest.mark.parametrize(("stream", "message"), INVALID_BODIES, ids=[repr(s[:24]) for s, _ in INVALID_BODIES])
def test_chunked_errors_do_not_depend_on_split_points(h1, stream, message):
    for cut in range(len(stream) + 1):
        with pytest.raises(BadRequest) as caught:
            decode_in_pieces(h1, stream, [cut])
        assert str(caught.value) == message, cut
    with pytest.raises(BadRequest, match=message):
        decode_in_pieces(h1, stream, list(range(1, len(stream))))


def test_chunk_line_limit_is_exact(h1):
    # A line of MAX_CHUNK_LINE bytes passes, one byte more fails, whole or in pieces.
    fits = b"1;" + b"e" * (h1.MAX_CHUNK_LINE - 2) + b"\r\nx\r\n0\r\n\r\n"
    too_long = b"1;" + b"e" * (h1.MAX_CHUNK_LINE - 1) + b"\r\nx\r\n0\r\n\r\n"
    for cut in (0, h1.MAX_CHUNK_LINE, h1.MAX_CHUNK_LINE + 1, h1.MAX_CHUNK_LINE + 2, len(fits)):
        assert decode_in_pieces(h1, fits, [cut]) == (b"x", len(fits), True)
        with pytest.raises(BadRequest, match="chunk line too long"):
            decode_in_pieces(h1, too_long, [cut])


def test_chunked_error_class_is_chosen_by_the_caller(h1):
    decoder = h1.ChunkedDecoder(UpstreamProtocolError)
    with pytest.raises(UpstreamProtocolError, match="invalid chunk size"):
        decoder.feed(b"g\r\n")


def test_a_large_chunk_streams_in_pieces(h1):
    decoder = h1.ChunkedDecoder()
    assert decoder.feed(b"100000\r\n") == ([], 8)
    total = 0
    for _ in range(16):
        pieces, used = decoder.feed(b"x" * 65536)
        assert used == 65536
        total += sum(map(len, pieces))
    assert total == 0x100000
    assert decoder.feed(b"\r\n0\r\n\r\n") == ([], 7)
    assert decoder.done


# --- framing helpers ----------------------------------------------------------------------


def test_chunk_frames_one_piece(h1):
    assert h1.chunk(b"hello") == b"5\r\nhello\r\n"
    assert h1.chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert h1.LAST_CHUNK == b"0\r\n\r\n"
    stream = h1.chunk(b"ab") + h1.chunk(b"cde") + h1.LAST_CHUNK
    assert decode_in_pieces(h1, stream, []) == (b"abcde", len(stream), True)


def test_drop_header_lines(h1):
    block = b"Host: a\r\nX-Secret: 1\r\nx-secret: 2\r\nAccept: */*\r\nX-Secretive: 3\r\n"
    assert (
        h1.drop_header_lines(block, frozenset([b"x-secret"]))
        == b"Host: a\r\nAccept: */*\r\nX-Secretive: 3\r\n"
    )
    assert h1.drop_header_lines(block, frozenset()) == block
    assert h1.drop_header_lines(b"", frozenset([b"host"])) == b""
