"""Malformed responses end to end: graylane in front of an upstream that answers raw bytes.

When an upstream's answer cannot be read one way only, the client gets a 502 with a
JSON body naming the request id if nothing of the response was sent yet; once the
response has started, the only honest signal left is to close the connection.

The upstream here is a few lines of blocking sockets: it reads one request head and
then plays a script (bytes to send, events to wait for), so a test controls exactly
which bytes graylane sees, and when.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from proxy.testing import GraylaneProcess, PeerClosed, RawClient, Response

pytestmark = pytest.mark.integration

CONFIG = """
version: 1
listeners:
  - address: 127.0.0.1:0
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

Step = bytes | threading.Event


class RawUpstream:
    """Accepts connections; on each, reads one request head, then plays ``script``:
    bytes are sent, an Event is waited for (at most ``timeout``). Then it closes."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.script: list[Step] = []
        self.heads: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="raw-upstream", daemon=True)
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.getsockname()
        return f"{host}:{port}"

    def received(self) -> list[bytes]:
        """The request heads read so far (since the last ``clear``)."""
        with self._lock:
            return list(self.heads)

    def clear(self) -> None:
        with self._lock:
            self.heads.clear()

    def stop(self) -> None:
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._server.close()
        self._acceptor.join(self.timeout)
        for thread in self._threads:
            thread.join(self.timeout)

    def _accept(self) -> None:
        while True:  # ends when stop() shuts the listening socket
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn, list(self.script)), daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, script: list[Step]) -> None:
        with conn:
            conn.settimeout(self.timeout)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf and len(buf) < 1 << 20:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                with self._lock:
                    self.heads.append(buf)
                for step in script:
                    if isinstance(step, threading.Event):
                        step.wait(self.timeout)
                    else:
                        conn.sendall(step)
            except OSError:  # graylane closed its side: the script is over
                pass


@dataclass
class Stack:
    proxy: GraylaneProcess
    upstream: RawUpstream

    def client(self) -> RawClient:
        return RawClient(self.proxy.host, self.proxy.port, timeout=5.0)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    upstream = RawUpstream()
    try:
        with GraylaneProcess(CONFIG.format(endpoint=upstream.endpoint)) as proxy:
            yield Stack(proxy, upstream)
    finally:
        upstream.stop()


@pytest.fixture
def proxy(stack: Stack) -> Iterator[Stack]:
    """The module's stack; the test sets ``stack.upstream.script``. Events in a script are
    set afterwards, so that no upstream connection outlives its test."""
    stack.upstream.clear()
    assert stack.proxy.running
    yield stack
    for step in stack.upstream.script:
        if isinstance(step, threading.Event):
            step.set()
    stack.upstream.script = []


def assert_bad_gateway(response: Response) -> None:
    assert response.status == 502, response
    assert response.get("Content-Type") == "application/json"
    body = response.json()
    request_id = response.get("X-Request-ID")
    assert request_id
    assert body == {"error": "bad_gateway", "status": 502, "request_id": request_id}


def ask(stack: Stack, script: list[Step]) -> Response:
    """GET /x through graylane while the upstream plays ``script``; the response."""
    stack.upstream.script = script
    with stack.client() as client:
        response = client.request("GET", "/x")
    assert len(stack.upstream.received()) == 1  # the request itself did reach the upstream
    return response


def test_a_valid_raw_response_passes(proxy):
    # The control: the same upstream with a good answer.
    response = ask(proxy, [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"])
    assert response.status == 200
    assert response.body == b"hello"


# --- nothing sent yet: 502 -------------------------------------------------------------------------

GARBAGE = b"SSH-2.0-OpenSSH_9.6\r\n\r\n"
GARBAGE_THEN_CLOSE = b"\x00\x01\x02 not http at all"
STATUS_NOT_DIGITS = b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"
STATUS_NO_SPACE = b"HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n"
STATUS_OUT_OF_RANGE = b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n"
STATUS_HTTP2 = b"HTTP/2 200\r\ncontent-length: 0\r\n\r\n"
REASON_CONTROL = b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n"
BARE_LF = b"HTTP/1.1 200 OK\nContent-Length: 0\n\r\n\r\n"
TE_AND_CL = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
TE_GZIP = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"
CL_TWICE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
CL_LIST = b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!"
CL_NEGATIVE = b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n"
OBS_FOLD = b"HTTP/1.1 200 OK\r\nX-Long: one\r\n two\r\nContent-Length: 0\r\n\r\n"
SPACE_BEFORE_COLON = b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"
NUL_IN_HEADER = b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n"
CONNECTION_NAMES_LENGTH = b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
BAD_CHUNK_WITH_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"

MALFORMED = {
    "garbage": GARBAGE,
    "garbage-then-close": GARBAGE_THEN_CLOSE,
    "status-not-digits": STATUS_NOT_DIGITS,
    "status-no-space": STATUS_NO_SPACE,
    "status-out-of-range": STATUS_OUT_OF_RANGE,
    "status-http2": STATUS_HTTP2,
    "reason-control": REASON_CONTROL,
    "bare-lf": BARE_LF,
    "te-and-cl": TE_AND_CL,
    "te-gzip": TE_GZIP,
    "cl-twice-differing": CL_TWICE,
    "cl-list-differing": CL_LIST,
    "cl-negative": CL_NEGATIVE,
    "obs-fold": OBS_FOLD,
    "space-before-colon": SPACE_BEFORE_COLON,
    "nul-in-header": NUL_IN_HEADER,
    "connection-names-content-length": CONNECTION_NAMES_LENGTH,
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_response_head_gives_502(proxy, raw):
    assert_bad_gateway(ask(proxy, [raw]))


def test_response_head_that_never_ends_gives_502(proxy):
    # 70 KiB of header lines and no empty line; the upstream then holds the connection
    # open, so only the size limit (64 KiB) can end the wait.
    endless = b"HTTP/1.1 200 OK\r\n" + (b"X-Pad: " + b"p" * 100 + b"\r\n") * 660
    assert len(endless) > 64 * 1024
    assert_bad_gateway(ask(proxy, [endless, threading.Event()]))


def test_bad_chunk_arriving_with_the_head_gives_502(proxy):
    proxy.upstream.script = [BAD_CHUNK_WITH_HEAD]
    with proxy.client() as client:
        client.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        try:
            response = client.read_response()
        except PeerClosed as closed:
            pytest.fail(f"connection closed with nothing sent: {closed.partial!r}")
    assert_bad_gateway(response)


# --- response started: the connection is closed ------------------------------------------------


def read_until(client: RawClient, marker: bytes) -> bytes:
    """Bytes from the client's connection until ``marker`` has arrived (bounded by the client's timeout)."""
    data = b""
    for _ in range(10_000):
        if marker in data:
            return data
        more = client.recv_some()
        if not more:
            break
        data += more
    raise AssertionError(f"{marker!r} never arrived; got {data[:300]!r}")


STARTED = {
    "bad-chunk-size": b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-without-crlf": b"5\r\nworldXX\r\n0\r\n\r\n",
    "bare-lf-in-chunk": b"5\nworld\r\n0\r\n\r\n",
    "bad-trailer": b"0\r\nno colon\r\n\r\n",
}


@pytest.mark.parametrize("rest", STARTED.values(), ids=STARTED.keys())
def test_bad_chunk_after_the_response_started_closes(proxy, rest):
    go = threading.Event()
    first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    proxy.upstream.script = [first, go, rest]
    with proxy.client() as client:
        client.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        started = read_until(client, b"5\r\nhello\r\n")
        assert started.startswith(b"HTTP/1.1 200 OK\r\n")
        go.set()
        after = client.read_until_closed()
    # The client saw the good part, then the end of the connection: never a last chunk.
    assert b"0\r\n\r\n" not in after
    assert b"hello" not in after and b"world" not in after


def test_upstream_closing_inside_a_length_body_closes(proxy):
    go = threading.Event()
    proxy.upstream.script = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", go]
    with proxy.client() as client:
        client.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        started = read_until(client, b"hello")
        go.set()  # the upstream's script ends: it closes after 5 of 10 bytes
        assert client.read_until_closed() == b""
    head, _, body = started.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 10" in head
    assert body == b"hello"
