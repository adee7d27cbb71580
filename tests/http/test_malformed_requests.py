"""Malformed requests end to end: a real graylane process in front of a real backend.

Every malformed request must be answered with its error status and a small JSON
body, the client connection must be closed (nothing after bad framing can be
trusted), and nothing may reach the backend as a complete request. The raw bytes
of each case are constants below; a few cases are also fed one byte at a time.

One proxy and one backend serve the whole module (starting a process per case
would cost more than all the cases together); the backend's record is cleared
before each test, and each test ends with a valid request that must be the only
one the backend saw.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from proxy.testing import Backend, GraylaneProcess, RawClient, Response

pytestmark = pytest.mark.integration

MAX_URI = 1024
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20

CONFIG = """
version: 1
listeners:
  - address: 127.0.0.1:0
limits: {{max_uri_bytes: {max_uri}, max_header_bytes: 4KiB, max_headers: {max_headers}}}
services:
  api:
    versions:
      v1:
        endpoints: [{endpoint}]
routes:
  - name: all
    match: {{path: {{prefix: /}}}}
    service: api
"""

# The "error" of the JSON body, per status. 414's reason phrase depends on the Python version
# ("Request-URI Too Long" before 3.13, "URI Too Long" since), and so does its name.
ERROR_NAMES = {
    400: {"bad_request"},
    414: {"uri_too_long", "request-uri_too_long"},
    431: {"request_header_fields_too_large"},
    505: {"http_version_not_supported"},
}


@dataclass
class Stack:
    proxy: GraylaneProcess
    backend: Backend

    def client(self, **opts) -> RawClient:
        return RawClient(self.proxy.host, self.proxy.port, timeout=5.0, **opts)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Backend("v1") as backend:
        config = CONFIG.format(max_uri=MAX_URI, max_headers=MAX_HEADERS, endpoint=backend.endpoint)
        with GraylaneProcess(config) as proxy:
            yield Stack(proxy, backend)


@pytest.fixture
def proxy(stack: Stack) -> Iterator[Stack]:
    """The module's stack, with the backend's record cleared; afterwards a valid request
    must still work and be the only request the backend has seen."""
    stack.backend.clear()
    assert stack.proxy.running
    yield stack
    with stack.client() as client:
        response = client.request("GET", "/sentinel")
    assert response.status == 200, stack.proxy.logs()[-20:]
    seen = [r.target for r in stack.backend.wait_for_requests(1)]
    assert seen == ["/sentinel"], "a malformed request reached the backend"


def assert_refused(client: RawClient, response: Response, status: int) -> None:
    """The error answer: status, JSON body naming the request id, and the connection closed."""
    assert response.status == status, response
    assert response.get("Content-Type") == "application/json"
    assert response.get("Connection") == "close"
    body = response.json()
    request_id = response.get("X-Request-ID")
    assert request_id
    assert body.pop("error") in ERROR_NAMES[status]
    assert body == {"status": status, "request_id": request_id}
    assert client.is_closed(timeout=5.0), "the connection stayed open after a malformed request"


def send_bytewise(client: RawClient, raw: bytes) -> None:
    """Send ``raw`` one byte per segment; stop early once graylane has answered (it may
    refuse a request before its end, and writing to a closed connection would reset it)."""
    for i in range(len(raw)):
        if select.select([client.sock], [], [], 0)[0]:
            return
        client.send(raw[i : i + 1])


def send_and_expect(stack: Stack, raw: bytes, status: int, *, bytewise: bool = False) -> None:
    with stack.client(recv_size=1 if bytewise else 256 * 1024) as client:
        if bytewise:
            send_bytewise(client, raw)
        else:
            client.send(raw)
        response = client.read_response()
        assert_refused(client, response, status)
    # Nothing was forwarded: the backend has no request at all.
    assert stack.backend.requests == []


# --- framing ------------------------------------------------------------------------------------

TE_AND_CL = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
)
CL_AND_TE = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)
CL_TWICE = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
CL_LIST = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!"
CL_NEGATIVE = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"
CL_EXPONENT = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n"
CL_HEX = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"
CL_PLUS = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length:  +5\r\n\r\nhello"
CL_EMPTY = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n"
TE_GZIP = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"
TE_CHUNKED_GZIP = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"
TE_IDENTITY = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"
TE_CHUNKED_TWICE = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"
TE_TWO_HEADERS = (
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)
TE_IN_HTTP10 = b"POST /up HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"

FRAMING = {
    "te-and-cl": TE_AND_CL,
    "cl-and-te": CL_AND_TE,
    "cl-twice-differing": CL_TWICE,
    "cl-list-differing": CL_LIST,
    "cl-negative": CL_NEGATIVE,
    "cl-exponent": CL_EXPONENT,
    "cl-hex": CL_HEX,
    "cl-plus": CL_PLUS,
    "cl-empty": CL_EMPTY,
    "te-gzip": TE_GZIP,
    "te-chunked-gzip": TE_CHUNKED_GZIP,
    "te-identity": TE_IDENTITY,
    "te-chunked-chunked": TE_CHUNKED_TWICE,
    "te-two-headers": TE_TWO_HEADERS,
    "te-in-http10": TE_IN_HTTP10,
}


@pytest.mark.parametrize("raw", FRAMING.values(), ids=FRAMING.keys())
def test_ambiguous_framing_is_refused(proxy, raw):
    send_and_expect(proxy, raw, 400)


# --- header lines -------------------------------------------------------------------------------

OBS_FOLD = b"GET /p HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n"
SPACE_BEFORE_COLON = b"GET /p HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"
CR_IN_VALUE = b"GET /p HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n"
LF_IN_VALUE = b"GET /p HTTP/1.1\r\nHost: a\r\nX-A: a\nb\r\n\r\n"
NUL_IN_VALUE = b"GET /p HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n"
CR_IN_NAME = b"GET /p HTTP/1.1\r\nHost: a\r\nX\r-A: ab\r\n\r\n"
LF_IN_NAME = b"GET /p HTTP/1.1\r\nHost: a\r\nX\n-A: ab\r\n\r\n"
NUL_IN_NAME = b"GET /p HTTP/1.1\r\nHost: a\r\nX\x00-A: ab\r\n\r\n"
CONTROL_IN_VALUE = b"GET /p HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n"
BARE_LF_LINES = b"GET /p HTTP/1.1\nHost: a\n\r\n\r\n"

HEADER_LINES = {
    "obs-fold": OBS_FOLD,
    "space-before-colon": SPACE_BEFORE_COLON,
    "cr-in-value": CR_IN_VALUE,
    "lf-in-value": LF_IN_VALUE,
    "nul-in-value": NUL_IN_VALUE,
    "cr-in-name": CR_IN_NAME,
    "lf-in-name": LF_IN_NAME,
    "nul-in-name": NUL_IN_NAME,
    "control-in-value": CONTROL_IN_VALUE,
    "bare-lf-lines": BARE_LF_LINES,
}


@pytest.mark.parametrize("raw", HEADER_LINES.values(), ids=HEADER_LINES.keys())
def test_malformed_header_lines_are_refused(proxy, raw):
    send_and_expect(proxy, raw, 400)


# --- request line and Host ---------------------------------------------------------------------

METHOD_WITH_SPACE = b"GE T /p HTTP/1.1\r\nHost: a\r\n\r\n"
METHOD_WITH_PAREN = b"G(T /p HTTP/1.1\r\nHost: a\r\n\r\n"
TARGET_WITH_SPACE = b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"
TARGET_WITH_CONTROL = b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"
TARGET_WITH_DEL = b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"
TARGET_WITHOUT_SCHEME_COLON = b"GET http//x HTTP/1.1\r\nHost: a\r\n\r\n"
CONNECT_AUTHORITY = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
NO_HOST = b"GET /p HTTP/1.1\r\nAccept: */*\r\n\r\n"
TWO_HOSTS = b"GET /p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
HOST_WITH_SLASH = b"GET /p HTTP/1.1\r\nHost: a/b\r\n\r\n"
VERSION_X = b"GET /p HTTP/x\r\nHost: a\r\n\r\n"
VERSION_LOWER = b"GET /p http/1.1\r\nHost: a\r\n\r\n"
VERSION_12 = b"GET /p HTTP/1.2\r\nHost: a\r\n\r\n"

REQUEST_LINES = {
    "method-with-space": (METHOD_WITH_SPACE, 400),
    "method-with-paren": (METHOD_WITH_PAREN, 400),
    "target-with-space": (TARGET_WITH_SPACE, 400),
    "target-with-control": (TARGET_WITH_CONTROL, 400),
    "target-with-del": (TARGET_WITH_DEL, 400),
    "target-http//x": (TARGET_WITHOUT_SCHEME_COLON, 400),
    "connect-authority-form": (CONNECT_AUTHORITY, 400),
    "no-host": (NO_HOST, 400),
    "two-hosts": (TWO_HOSTS, 400),
    "host-with-slash": (HOST_WITH_SLASH, 400),
    "version-x": (VERSION_X, 400),
    "version-lower-case": (VERSION_LOWER, 400),
    "version-1.2": (VERSION_12, 505),
}


@pytest.mark.parametrize(("raw", "status"), REQUEST_LINES.values(), ids=REQUEST_LINES.keys())
def test_malformed_request_lines_are_refused(proxy, raw, status):
    send_and_expect(proxy, raw, status)


def test_absolute_form_authority_overrides_a_conflicting_host(proxy):
    # Two names for one request is the shape of host confusion: routing and the upstream
    # must both see the target's authority (RFC 9112 3.2.2).
    with proxy.client() as client:
        client.send(b"GET http://real.example/abs?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
        assert client.read_response().status == 200
    (seen,) = proxy.backend.wait_for_requests(1)
    assert seen.target == "/abs?q=1"
    assert seen.header_values("Host") == ["real.example"]
    assert seen.header("X-Forwarded-Host") == "real.example"
    proxy.backend.clear()


# --- limits (small in this module's config) ----------------------------------------------------

LONG_URI = b"GET /" + b"u" * MAX_URI + b" HTTP/1.1\r\nHost: a\r\n\r\n"
LONG_URI_UNFINISHED = b"GET /" + b"u" * (MAX_URI + 100)  # no CRLF yet: refused before the line ends
LARGE_HEAD = (
    b"GET /p HTTP/1.1\r\nHost: a\r\n"
    + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 500) for i in range(9))
    + b"\r\n"
)
LARGE_HEAD_UNFINISHED = b"GET /p HTTP/1.1\r\nHost: a\r\n" + b"".join(
    b"X-%d: %s\r\n" % (i, b"v" * 500) for i in range(9)
)
MANY_HEADERS = (
    b"GET /p HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n"
)

LIMITS = {
    "long-uri": (LONG_URI, 414),
    "long-uri-unfinished": (LONG_URI_UNFINISHED, 414),
    "large-head": (LARGE_HEAD, 431),
    "large-head-unfinished": (LARGE_HEAD_UNFINISHED, 431),
    "many-headers": (MANY_HEADERS, 431),
}


def test_limit_cases_are_really_over_the_limits():
    assert len(LARGE_HEAD) > MAX_HEADER_BYTES and LARGE_HEAD.count(b"\r\n") - 2 < MAX_HEADERS
    assert len(LARGE_HEAD_UNFINISHED) > MAX_HEADER_BYTES
    assert len(MANY_HEADERS) < MAX_HEADER_BYTES and MANY_HEADERS.count(b"\r\n") - 2 == MAX_HEADERS + 1


@pytest.mark.parametrize(("raw", "status"), LIMITS.values(), ids=LIMITS.keys())
def test_limits_are_enforced(proxy, raw, status):
    send_and_expect(proxy, raw, status)


def test_a_head_at_the_limits_passes(proxy):
    target = b"/" + b"u" * (MAX_URI - 1)
    lines = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n"
    with proxy.client() as client:
        client.send(raw)
        response = client.read_response()
    assert response.status == 200
    assert proxy.backend.wait_for_requests(1)[0].target == target.decode()
    proxy.backend.clear()


# --- bad chunked bodies ------------------------------------------------------------------------

CHUNKED_HEAD = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"

BAD_CHUNKS = {
    "size-zz": b"zz\r\nhello\r\n0\r\n\r\n",
    "size-negative": b"-1\r\nhello\r\n0\r\n\r\n",
    "size-leading-space": b" 5\r\nhello\r\n0\r\n\r\n",
    "size-trailing-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "size-too-long": b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "no-crlf-after-data": b"5\r\nhelloXX\r\n0\r\n\r\n",
    "bare-lf-after-size": b"5\nhello\r\n0\r\n\r\n",
    "bare-lf-after-data": b"5\r\nhello\n0\r\n\r\n",
    "control-in-extension": b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
    "bad-trailer": b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
}


@pytest.mark.parametrize("body", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_bad_chunk_in_the_first_packet(proxy, body):
    # Head and body arrive together: the error is found before anything is forwarded.
    send_and_expect(proxy, CHUNKED_HEAD + b"\r\n" + body, 400)


@pytest.mark.parametrize("body", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_bad_chunk_after_the_head_was_forwarded(proxy, body):
    # graylane answers 100 Continue once the head is written to an upstream connection,
    # so the body below arrives when the backend already holds the start of the request.
    with proxy.client() as client:
        client.send(CHUNKED_HEAD + b"Expect: 100-continue\r\n\r\n")
        interim = client.read_response(return_interim=True)
        assert interim.status == 100
        client.send(body)
        assert_refused(client, client.read_response(), 400)
    # The backend never saw a complete request: the exchange did not succeed.
    assert proxy.backend.requests == []


def test_a_valid_chunked_body_after_continue_passes(proxy):
    # The control for the test above: the same path with a good body succeeds.
    with proxy.client() as client:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        assert client.read_response(return_interim=True).status == 100
        client.send(b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n")
        response = client.read_response()
    assert response.status == 200
    assert response.body == b"hello world"
    assert proxy.backend.wait_for_requests(1)[0].body == b"hello world"
    proxy.backend.clear()


# --- split points ----------------------------------------------------------------------------------

VALID_GET = b"GET /bytewise?x=1 HTTP/1.1\r\nHost: a\r\nX-Trace: t-1\r\n\r\n"


def test_valid_request_byte_by_byte(proxy):
    with proxy.client(recv_size=1) as client:
        send_bytewise(client, VALID_GET)
        response = client.read_response()
        assert response.status == 200
        assert not client.is_closed(timeout=0.2)  # keep-alive: the connection stays usable
    (seen,) = proxy.backend.wait_for_requests(1)
    assert seen.target == "/bytewise?x=1"
    assert seen.header("X-Trace") == "t-1"
    proxy.backend.clear()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (TE_AND_CL, 400),
        (OBS_FOLD, 400),
        (CHUNKED_HEAD + b"\r\n5\r\nhelloXX\r\n0\r\n\r\n", 400),
        (LONG_URI, 414),
    ],
    ids=["te-and-cl", "obs-fold", "bad-chunk", "long-uri"],
)
def test_malformed_request_byte_by_byte(proxy, raw, status):
    send_and_expect(proxy, raw, status, bytewise=True)


def test_leading_empty_lines_are_ignored(proxy):
    # RFC 9112 2.2: empty lines before a request line are skipped, not an error.
    with proxy.client() as client:
        client.send(b"\r\n\r\n" + VALID_GET)
        assert client.read_response().status == 200
    proxy.backend.wait_for_requests(1)
    proxy.backend.clear()


def test_a_malformed_request_after_a_valid_one_on_the_same_connection(proxy):
    # Pipelined: the first request is answered, the second refused, then the connection ends.
    with proxy.client() as client:
        client.send(VALID_GET + TE_AND_CL)
        first = client.read_response()
        assert first.status == 200
        assert_refused(client, client.read_response(), 400)
    assert [r.target for r in proxy.backend.wait_for_requests(1)] == ["/bytewise?x=1"]
    proxy.backend.clear()
