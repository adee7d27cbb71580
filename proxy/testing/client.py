"""A raw-socket HTTP/1.1 client for graylane's tests.

It writes exactly the bytes a test gives it and reads responses strictly, so a
test sees what the proxy really sent: framing (Content-Length, chunked with its raw
bytes kept, close-delimited), 1xx interim responses, connections closed or reset.

Blocking sockets, a deadline on every read (``timeout`` seconds per call), no
shared state: one client per thread, as many threads as needed.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadResponse", "PeerClosed", "RawClient", "Response", "build_request", "request"]

MAX_HEAD_BYTES = 1024 * 1024
MAX_INTERIM = 32
MAX_TRAILER_LINES = 1000
_RECV_SIZE = 256 * 1024
_STATUS_LINE = re.compile(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]+")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class BadResponse(Exception):
    """The bytes received are not a valid HTTP/1.1 response."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(f"{message}: {raw[:200]!r}" if raw else message)
        self.raw = raw


class PeerClosed(ConnectionError):
    """The peer closed the connection (FIN) before a complete response."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(f"{message}; received {partial[:200]!r}" if partial else message)
        self.partial = partial


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    http_version: str = "HTTP/1.1"
    raw_head: bytes = b""
    raw_body: bytes = b""  # the body as it came on the wire (chunk framing kept)
    body_length: int = 0  # decoded length, also when the body was not kept
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[Response] = field(default_factory=list)  # 1xx before this one

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def _header_items(headers: Headers | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def build_request(
    method: str,
    target: str,
    headers: Headers | None = None,
    body: bytes | None = None,
    *,
    host: str | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """Request bytes. Adds ``Host`` (when ``host`` is given and none is set) and
    ``Content-Length`` (when there is a body and no framing header is set)."""
    items = _header_items(headers)
    names = {name.lower() for name, _ in items}
    if host is not None and "host" not in names:
        items.insert(0, ("Host", host))
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        items.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} {version}", *(f"{name}: {value}" for name, value in items), "", ""]
    return "\r\n".join(lines).encode("latin-1") + (body or b"")


class RawClient:
    """One TCP connection speaking HTTP/1.1 from a blocking socket.

    ``timeout`` bounds every call (connect, send, each read_* as a whole);
    ``recv_size`` caps each recv (1 makes the parser meet every split point).
    """

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        *,
        recv_size: int = _RECV_SIZE,
        sock: socket.socket | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.recv_size = recv_size
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        self.sock = sock
        self._buf = bytearray()
        self._eof = False

    @classmethod
    def from_socket(
        cls, sock: socket.socket, timeout: float = 10.0, *, recv_size: int = _RECV_SIZE
    ) -> RawClient:
        """A client over an already connected socket (e.g. one end of a socketpair)."""
        return cls("", 0, timeout, recv_size=recv_size, sock=sock)

    # --- writing ----------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Send FIN: the peer sees the end of the request stream; reading goes on."""
        self.sock.shutdown(socket.SHUT_WR)

    def request(
        self,
        method: str,
        target: str,
        headers: Headers | None = None,
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        """Send one request on this connection and read its response."""
        host = f"{self.host}:{self.port}" if self.host else None
        self.send(build_request(method, target, headers, body, host=host))
        return self.read_response(head_request=method.upper() == "HEAD", timeout=timeout)

    # --- reading responses ------------------------------------------------------

    def read_response(
        self,
        head_request: bool = False,
        *,
        timeout: float | None = None,
        keep_body: bool = True,
        return_interim: bool = False,
    ) -> Response:
        """Read one response. 1xx interim responses before it land in ``.interim``
        (or, with ``return_interim``, the first one is returned by itself).
        ``keep_body=False`` counts the body (``body_length``) without keeping it."""
        deadline = self._deadline(timeout)
        interim: list[Response] = []
        for _ in range(MAX_INTERIM):
            raw_head = self._read_head(deadline)
            version, status, reason, headers = _parse_head(raw_head)
            if 100 <= status < 200 and status != 101:
                response = Response(status, reason, headers, b"", version, raw_head)
                if return_interim:
                    return response
                interim.append(response)
                continue
            response = Response(status, reason, headers, b"", version, raw_head, interim=interim)
            self._read_body(response, head_request, keep_body, deadline)
            return response
        raise BadResponse(f"more than {MAX_INTERIM} interim responses")

    def _read_body(self, response: Response, head_request: bool, keep: bool, deadline: float) -> None:
        status = response.status
        if head_request or status < 200 or status in (204, 304):
            return
        codings = ",".join(response.get_all("transfer-encoding"))
        if codings:
            if codings.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._read_chunked(response, keep, deadline)
            else:
                self._read_close_delimited(response, keep, deadline)
            return
        lengths = {v.strip() for value in response.get_all("content-length") for v in value.split(",")}
        if lengths:
            if len(lengths) > 1 or not next(iter(lengths)).isdigit():
                raise BadResponse(f"bad Content-Length {sorted(lengths)}", response.raw_head)
            size = int(next(iter(lengths)))
            body = self._read_exact(size, deadline, keep)
            response.body = response.raw_body = body
            response.body_length = size
            return
        self._read_close_delimited(response, keep, deadline)

    def _read_close_delimited(self, response: Response, keep: bool, deadline: float) -> None:
        parts: list[bytes] = []
        total = 0
        while True:
            chunk = self._take_some(deadline)
            if not chunk:
                break
            total += len(chunk)
            if keep:
                parts.append(chunk)
        response.body = response.raw_body = b"".join(parts)
        response.body_length = total

    def _read_chunked(self, response: Response, keep: bool, deadline: float) -> None:
        response.chunked = True
        body: list[bytes] = []
        raw: list[bytes] = []
        total = 0
        while True:  # each pass consumes a chunk or fails; the deadline bounds it
            line = self._read_line(deadline)
            size_text = line.split(b";", 1)[0].strip(b" \t")
            if not _HEX.fullmatch(size_text):
                raise BadResponse("bad chunk size line", line)
            size = int(size_text, 16)
            if keep:
                raw.append(line + b"\r\n")
            if size == 0:
                break
            data = self._read_exact(size, deadline, keep)
            if self._read_line(deadline) != b"":
                raise BadResponse("chunk data not followed by CRLF")
            total += size
            if keep:
                body.append(data)
                raw.append(data + b"\r\n")
        for _ in range(MAX_TRAILER_LINES):
            line = self._read_line(deadline)
            if keep:
                raw.append(line + b"\r\n")
            if not line:
                break
            response.trailers.append(_parse_field(line))
        else:
            raise BadResponse(f"more than {MAX_TRAILER_LINES} trailer lines")
        response.body = b"".join(body)
        response.raw_body = b"".join(raw)
        response.body_length = total

    # --- reading raw bytes ------------------------------------------------------

    def recv_some(self, timeout: float | None = None) -> bytes:
        """Whatever is buffered, else the next bytes to arrive; b"" once the peer closed."""
        return self._take_some(self._deadline(timeout))

    def read_exactly(self, size: int, timeout: float | None = None) -> bytes:
        """Exactly ``size`` bytes (raises PeerClosed if the connection ends first)."""
        return self._read_exact(size, self._deadline(timeout), True)

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything until the peer closes (a reset counts as closed)."""
        deadline = self._deadline(timeout)
        parts = []
        try:
            while chunk := self._take_some(deadline):
                parts.append(chunk)
        except ConnectionResetError:
            self._eof = True
        return b"".join(parts)

    def is_closed(self, timeout: float = 1.0) -> bool:
        """Whether the peer closes (FIN or RST) within ``timeout``. Bytes arriving
        meanwhile are kept for later reads."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self._fill(remaining)
            except TimeoutError:
                return False
            except (ConnectionResetError, BrokenPipeError):
                self._eof = True
            except OSError:  # closed locally
                return True
        return True

    # --- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- buffer -------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, remaining: float) -> bool:
        """One recv into the buffer; False at end of stream."""
        self.sock.settimeout(max(remaining, 1e-6))
        data = self.sock.recv(self.recv_size)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _fill_before(self, deadline: float) -> bool:
        """One recv before ``deadline``; False at end of stream."""
        if self._eof:
            return False
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            return self._fill(remaining)
        except TimeoutError:
            unread = bytes(self._buf[:200])
            raise TimeoutError(f"timed out; {len(self._buf)} bytes unread: {unread!r}") from None

    def _take_some(self, deadline: float) -> bytes:
        if not self._buf and not self._fill_before(deadline):
            return b""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _read_head(self, deadline: float) -> bytes:
        searched = 0
        while True:  # every pass adds bytes or ends: bounded by the deadline and MAX_HEAD_BYTES
            end = self._buf.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                head = bytes(self._buf[: end + 4])
                del self._buf[: end + 4]
                return head
            searched = len(self._buf)
            if searched > MAX_HEAD_BYTES:
                raise BadResponse("response head too large", bytes(self._buf))
            if not self._fill_before(deadline):
                partial = bytes(self._buf)
                if partial.startswith(b"HTTP/") or not partial:
                    raise PeerClosed("connection closed before a complete response head", partial)
                raise BadResponse("not an HTTP response", partial)

    def _read_line(self, deadline: float, limit: int = 64 * 1024) -> bytes:
        searched = 0
        while True:
            end = self._buf.find(b"\r\n", max(0, searched - 1))
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            searched = len(self._buf)
            if searched > limit:
                raise BadResponse("line too long", bytes(self._buf[:200]))
            if not self._fill_before(deadline):
                raise PeerClosed("connection closed inside a chunked body", bytes(self._buf))

    def _read_exact(self, size: int, deadline: float, keep: bool) -> bytes:
        """``size`` bytes from the buffer then the socket; b"" (but consumed) when not kept."""
        if len(self._buf) >= size:
            data = bytes(self._buf[:size]) if keep else b""
            del self._buf[:size]
            return data
        got = len(self._buf)
        out = bytearray(size) if keep else bytearray(min(size, _RECV_SIZE))
        view = memoryview(out)
        if keep:
            view[:got] = self._buf
        self._buf.clear()
        while got < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {got} of {size} body bytes")
            self.sock.settimeout(remaining)
            want = min(size - got, self.recv_size)
            target = view[got : got + want] if keep else view[:want]
            try:
                n = self.sock.recv_into(target, want)
            except TimeoutError:
                raise TimeoutError(f"timed out after {got} of {size} body bytes") from None
            if n == 0:
                self._eof = True
                raise PeerClosed(f"connection closed after {got} of {size} body bytes")
            got += n
        return bytes(out) if keep else b""


def _parse_head(raw: bytes) -> tuple[str, int, str, list[tuple[str, str]]]:
    lines = raw[:-4].split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise BadResponse("bad status line", raw)
    version, status, reason = match.groups()
    headers = [_parse_field(line) for line in lines[1:]]
    return version.decode(), int(status), (reason or b"").decode("latin-1"), headers


def _parse_field(line: bytes) -> tuple[str, str]:
    name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.fullmatch(name):
        raise BadResponse("bad header line", line)  # also obs-fold and space before the colon
    return name.decode("latin-1"), value.strip(b" \t").decode("latin-1")


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: Headers | None = None,
    body: bytes | None = None,
    *,
    timeout: float = 10.0,
) -> Response:
    """One request on a new connection, closed afterwards."""
    with RawClient(host, port, timeout) as client:
        return client.request(method, path, headers, body)
