"""HTTP/1.1 message heads and chunked framing, sans-IO (RFC 9112).

Theory of operation
-------------------
The data plane finds the end of a head itself (``CRLFCRLF``) and hands the whole
head to ``parse_request_head`` / ``parse_response_head``. Working on the complete
head, rather than on per-header callbacks, lets the proxy forward the header block
as one slice when nothing in it must change, and lets the strict checks below run
as a handful of C-speed bytes operations.

Everything a proxy must understand is extracted (framing, Connection and what it
names, Host, Upgrade, Expect, X-Forwarded-For, X-Request-ID); every other header is
kept as the raw line the client sent. Anything that could be read two ways by two
parsers (the shapes of request smuggling) is refused: the request with a 400, the
response with a 502.

This file is plain Python and is also compiled by Cython (``_http1_c``); both must
behave identically (tests feed both the same random input).
"""

from __future__ import annotations

from proxy.errors import (
    BadRequest,
    HeaderTooLarge,
    UpstreamProtocolError,
    UriTooLong,
    VersionNotSupported,
)
from proxy.http.request import RequestHead

CRLF = b"\r\n"

# tchar from RFC 9110 5.6.2; bytes.translate(None, TOKEN) leaves only the bad bytes.
TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Bytes refused in a request-target (RFC 9112 3.2, whose grammar is ASCII URI syntax): space, controls,
# DEL, non-ASCII (a client must percent-encode it) and "#" (a fragment is never sent; a parser that cut
# the target there would route a different path than the upstream sees).
TARGET_BAD = bytes(range(0, 0x21)) + b"#" + bytes(range(0x7F, 0x100))
# Bytes allowed in Host and in the authority of an absolute-form target: uri-host [":" port]
# (RFC 3986 reg-name / IP-literal / IPv4); anything else in Host is a 400 (RFC 9110 7.2).
HOST_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]"
# Bytes never allowed in a header value once the head is split into lines.
VALUE_BAD = bytes(range(0, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
HEX = b"0123456789abcdefABCDEF"
DIGITS = b"0123456789"

# Request headers the data plane rewrites itself or that are hop-by-hop: never forwarded as received.
REQUEST_DROP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"traceparent",  # the proxy's hop gets a new span id (proxy.observe.tracing)
    ]
)
RESPONSE_DROP = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"]
)

HTTP11 = b"HTTP/1.1"
HTTP10 = b"HTTP/1.0"


class ResponseHead:
    __slots__ = (
        "status",  # int
        "http_minor",  # 0 or 1
        "reason",  # bytes
        "headers",  # list[tuple[bytes, bytes]]
        "content_length",  # int, -1 when absent
        "chunked",  # bool
        "keep_alive",  # bool: the upstream lets us reuse the connection
        "upgrade",  # bytes | None
        "forward_headers",  # bytes: header lines to forward, hop-by-hop removed, each ending CRLF
        "verbatim",  # bool: forward_headers is the upstream's own block, unchanged
    )


def _split_lines(head: bytes, error: type) -> list:
    """Split a complete head (ending CRLFCRLF) into lines; refuse bare CR, bare LF and NUL."""
    if not head.endswith(b"\r\n\r\n"):
        raise error("incomplete message head")
    crlf = head.count(CRLF)
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        raise error("bare CR or LF in message head")
    if b"\x00" in head:
        raise error("NUL in message head")
    lines = head.split(CRLF)
    # A head ends with CRLFCRLF, so split leaves two empty strings at the end.
    del lines[-2:]
    return lines


def _parse_content_length(value: bytes, previous: int, error: type) -> int:
    # A list "5, 5" is allowed when every member is the same (RFC 9110 8.6).
    result = previous
    for part in value.split(b","):
        part = part.strip(b" \t")
        if not part or len(part) > 18 or part.translate(None, DIGITS):
            raise error("malformed Content-Length")
        length = int(part)
        if result != -1 and result != length:
            raise error("differing Content-Length values")
        result = length
    return result


def _header_fields(lines: list, max_headers: int, error: type, too_many: type) -> list:
    """(lower-case name, value) pairs of every header line after the start line."""
    if len(lines) - 1 > max_headers:
        raise too_many("too many header fields")
    fields = []
    for i in range(1, len(lines)):
        line = lines[i]
        colon = line.find(b":")
        if colon <= 0:
            if line[:1] in (b" ", b"\t"):
                raise error("obsolete line folding in header")
            raise error("header line without a name")
        name = line[:colon]
        if name.translate(None, TOKEN):
            # Covers whitespace between the name and the colon as well.
            raise error("invalid header name")
        value = line[colon + 1 :].strip(b" \t")
        if value.translate(None, VALUE_BAD) != value:
            raise error("invalid character in header value")
        fields.append((name.lower(), value))
    return fields


def _connection_tokens(value: bytes, tokens: list) -> None:
    for token in value.split(b","):
        token = token.strip(b" \t").lower()
        if token:
            tokens.append(token)


def _forward_block(
    lines: list, fields: list, drop: frozenset, named: list, length: int, host: object
) -> bytes:
    """Header lines to forward: the raw lines, minus ``drop`` and what Connection names.

    ``length`` >= 0 asks for the Content-Length lines (a repeated header or a list such as
    "5, 5") to become one ``Content-Length: length`` line where the first of them stood, so the
    next recipient never has to resolve duplicates itself (RFC 9110 8.6). ``host``, when not
    None, is the value of the one Host line (replacing the received one, or first if none came).
    """
    kept = []
    if host is not None:
        kept.append(b"Host: " + host)
        kept.append(CRLF)
    merge = length >= 0
    for i in range(len(fields)):
        name = fields[i][0]
        if name in drop or name in named or (host is not None and name == b"host"):
            continue
        if merge and name == b"content-length":
            if length < 0:
                continue  # the one merged line is already written
            kept.append(b"Content-Length: %d" % length)
            length = -1
        else:
            kept.append(lines[i + 1])
        kept.append(CRLF)
    return b"".join(kept)


def parse_request_head(head: bytes, max_uri: int, max_headers: int) -> RequestHead:
    """Parse a complete request head (start line through the empty line).

    Raises BadRequest (400), UriTooLong (414), HeaderTooLarge (431) or
    VersionNotSupported (505).
    """
    lines = _split_lines(head, BadRequest)
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3:
        if len(parts) > 1 and len(parts[1]) > max_uri:
            raise UriTooLong("request-target too long")
        raise BadRequest("malformed request line")
    method = parts[0]
    target = parts[1]
    version = parts[2]
    if not method or method.translate(None, TOKEN):
        raise BadRequest("invalid method")
    if len(target) > max_uri:
        raise UriTooLong("request-target too long")
    if not target or target.translate(None, TARGET_BAD) != target:
        raise BadRequest("invalid request-target")
    if version == HTTP11:
        minor = 1
    elif version == HTTP10:
        minor = 0
    elif version[:5] == b"HTTP/" and len(version) == 8 and version[5:6].isdigit() and version[7:8].isdigit():
        raise VersionNotSupported("HTTP version not supported")
    else:
        raise BadRequest("malformed HTTP version")

    host = None
    absolute = False
    first = target[:1]
    if first == b"/":
        path_and_query = target
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        # absolute-form: the authority replaces Host (RFC 9112 3.2.2)
        rest = target[target.find(b"//") + 2 :]
        slash = rest.find(b"/")
        question = rest.find(b"?")
        cut = len(rest)
        if slash != -1:
            cut = slash
        if question != -1 and question < cut:
            cut = question
        host = rest[:cut]
        if not host or host.translate(None, HOST_CHARS):
            # Also refuses userinfo ("@"), which RFC 9110 4.2.4 forbids in http(s) URIs.
            raise BadRequest("invalid request-target")
        path_and_query = rest[cut:]
        if not path_and_query or path_and_query[:1] == b"?":
            path_and_query = b"/" + path_and_query
        absolute = True
    elif target == b"*" and method == b"OPTIONS":
        path_and_query = target
    else:
        # authority-form (CONNECT) and anything else: graylane is not a forward proxy
        raise BadRequest("invalid request-target")
    question = path_and_query.find(b"?")
    if question == -1:
        path = path_and_query
        query = b""
    else:
        path = path_and_query[:question]
        query = path_and_query[question + 1 :]

    fields = _header_fields(lines, max_headers, BadRequest, HeaderTooLarge)

    content_length = -1
    transfer_encoding = None
    connection = []
    upgrade = None
    expect_continue = False
    xff = None
    request_id = None
    traceparent = None
    traceparent_seen = False
    host_seen = False
    rebuild = False
    length_lines = 0
    for name, value in fields:
        if name in REQUEST_DROP:
            rebuild = True
            if name == b"transfer-encoding":
                transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
            elif name == b"connection":
                _connection_tokens(value, connection)
            elif name == b"upgrade":
                upgrade = value
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    expect_continue = True
            elif name == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif name == b"traceparent":
                # W3C: more than one traceparent is invalid; a new trace starts.
                traceparent = None if traceparent_seen else value
                traceparent_seen = True
        elif name == b"content-length":
            content_length = _parse_content_length(value, content_length, BadRequest)
            length_lines += 2 if b"," in value else 1
        elif name == b"host":
            if host_seen:
                raise BadRequest("more than one Host header")
            host_seen = True
            if value.translate(None, HOST_CHARS):
                raise BadRequest("invalid Host header")
            if host is None:
                host = value
        elif name == b"x-request-id" and request_id is None:
            request_id = value
    if minor == 1 and not host_seen:
        raise BadRequest("missing Host header")

    chunked = False
    if transfer_encoding is not None:
        if content_length != -1:
            raise BadRequest("both Transfer-Encoding and Content-Length")
        if minor == 0:
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if transfer_encoding.strip(b" \t").lower() != b"chunked":
            raise BadRequest("unsupported Transfer-Encoding (only a single chunked is accepted)")
        chunked = True

    if minor == 1:
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    if upgrade is not None and (minor == 0 or b"upgrade" not in connection):
        # RFC 9110 7.8: Upgrade counts only when Connection names it, and never in HTTP/1.0.
        upgrade = None

    named = [token for token in connection if token not in (b"close", b"keep-alive", b"upgrade")]
    if named:
        if b"host" in named or b"content-length" in named:
            raise BadRequest("Connection names an end-to-end header")
        rebuild = True
    merged_length = -1
    if length_lines > 1:
        merged_length = content_length
        rebuild = True
    if absolute:
        # RFC 9112 3.2.2: the target's authority overrides Host. Routing used the authority, so the
        # upstream must get it too, not a Host line that says something else.
        rebuild = True

    req = RequestHead()
    req.method = method
    req.target = target
    req.path = path
    req.query = query
    req.http_minor = minor
    req.headers = fields
    req.host = host
    req.content_length = content_length
    req.chunked = chunked
    req.keep_alive = keep_alive
    req.upgrade = upgrade
    req.expect_continue = expect_continue
    req.xff = xff
    req.request_id = request_id
    req.traceparent = traceparent
    if rebuild:
        req.forward_headers = _forward_block(
            lines, fields, REQUEST_DROP, named, merged_length, host if absolute else None
        )
    else:
        # Nothing to drop: forward the block as the client sent it, in one slice.
        start = len(request_line) + 2
        req.forward_headers = head[start : len(head) - 2]
    return req


def parse_response_head(head: bytes, max_headers: int) -> ResponseHead:
    """Parse a complete response head; any doubt is an UpstreamProtocolError (502)."""
    error = UpstreamProtocolError
    lines = _split_lines(head, error)
    status_line = lines[0]
    if len(status_line) < 12 or status_line[8:9] != b" ":
        raise error("malformed status line")
    version = status_line[:8]
    if version == HTTP11:
        minor = 1
    elif version == HTTP10:
        minor = 0
    else:
        raise error("unsupported HTTP version from upstream")
    code = status_line[9:12]
    if code.translate(None, DIGITS) or (len(status_line) > 12 and status_line[12:13] != b" "):
        raise error("malformed status code")
    status = int(code)
    if status < 100 or status > 599:
        # RFC 9110 15: 100..599; a code outside has no class to act on.
        raise error("malformed status code")
    reason = status_line[13:]
    if reason.translate(None, VALUE_BAD) != reason:
        # The status line is relayed as received: no control bytes may pass through.
        raise error("invalid character in reason phrase")

    fields = _header_fields(lines, max_headers, error, error)
    content_length = -1
    transfer_encoding = None
    connection = []
    upgrade = None
    rebuild = False
    length_lines = 0
    for name, value in fields:
        if name in RESPONSE_DROP:
            rebuild = True
            if name == b"transfer-encoding":
                transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
            elif name == b"connection":
                _connection_tokens(value, connection)
            elif name == b"upgrade":
                upgrade = value
        elif name == b"content-length":
            content_length = _parse_content_length(value, content_length, error)
            length_lines += 2 if b"," in value else 1

    chunked = False
    if transfer_encoding is not None:
        if transfer_encoding.strip(b" \t").lower() != b"chunked":
            raise error("unsupported Transfer-Encoding from upstream")
        if content_length != -1:
            raise error("both Transfer-Encoding and Content-Length from upstream")
        chunked = True

    if minor == 1:
        keep_alive = b"close" not in connection
    else:
        keep_alive = b"keep-alive" in connection and b"close" not in connection
    named = [token for token in connection if token not in (b"close", b"keep-alive", b"upgrade")]
    if b"content-length" in named:
        # Dropping it would leave the client a body without framing.
        raise error("Connection names Content-Length")
    merged_length = -1
    if length_lines > 1:
        merged_length = content_length
        rebuild = True

    resp = ResponseHead()
    resp.status = status
    resp.http_minor = minor
    resp.reason = reason
    resp.headers = fields
    resp.content_length = content_length
    resp.chunked = chunked
    resp.keep_alive = keep_alive
    resp.upgrade = upgrade
    if rebuild or named:
        resp.forward_headers = _forward_block(lines, fields, RESPONSE_DROP, named, merged_length, None)
        resp.verbatim = False
    else:
        resp.forward_headers = head[len(status_line) + 2 : len(head) - 2]
        resp.verbatim = True
    return resp


# Chunked decoder states
_SIZE = 0  # reading a chunk-size line
_DATA = 1  # reading chunk data
_DATA_END = 2  # reading the CRLF after chunk data
_TRAILER = 3  # reading trailer lines after the last chunk
_DONE = 4

MAX_CHUNK_LINE = 4096
MAX_TRAILER = 16384


class ChunkedDecoder:
    """Decodes a chunked body incrementally.

    ``feed(data)`` returns ``(pieces, consumed)``: the decoded data pieces and how
    many bytes of ``data`` belonged to the body. ``done`` turns true after the
    last chunk and its trailer; bytes after that (a pipelined request) are left
    for the caller, and later feeds consume nothing. Malformed framing raises
    ``error`` (given at creation).

    The outcome never depends on how the body is split into feeds: every check
    runs on complete lines, except the length limit of a line, which fails a
    partial line only once it can no longer fit (so a line fails alike whole or
    in pieces), and the CRLF after chunk data, which is checked byte by byte.
    """

    __slots__ = ("state", "remaining", "line", "trailer_bytes", "done", "error")

    def __init__(self, error: type = BadRequest) -> None:
        self.state = _SIZE
        self.remaining = 0
        self.line = b""
        self.trailer_bytes = 0
        self.done = False
        self.error = error

    def feed(self, data: bytes) -> tuple:
        pieces = []
        if self.done:
            return pieces, 0
        pos = 0
        end = len(data)
        while pos < end:
            state = self.state
            if state == _DATA:
                take = min(self.remaining, end - pos)
                pieces.append(data[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = _DATA_END
                continue
            if state == _DATA_END:
                # Exactly CRLF follows chunk data; self.line holds the CR when it came alone.
                expected = CRLF[len(self.line) :]
                take = min(len(expected), end - pos)
                if data[pos : pos + take] != expected[:take]:
                    raise self.error("missing CRLF after chunk data")
                pos += take
                if take == len(expected):
                    self.line = b""
                    self.state = _SIZE
                else:
                    self.line = b"\r"
                continue
            # The other states read lines; a line may arrive in several pieces.
            newline = data.find(b"\n", pos)
            if newline == -1:
                self.line += data[pos:]
                pos = end
                # MAX_CHUNK_LINE bytes and the CR still fit; one more never will.
                if len(self.line) > MAX_CHUNK_LINE + 1:
                    raise self.error("chunk line too long")
                break
            line = self.line + data[pos : newline + 1]
            self.line = b""
            pos = newline + 1
            if len(line) > MAX_CHUNK_LINE + 2:
                raise self.error("chunk line too long")
            if len(line) < 2 or line[-2:-1] != b"\r":
                raise self.error("bare LF in chunked body")
            line = line[:-2]
            if state == _SIZE:
                self._size_line(line)
            else:  # _TRAILER
                if not line:
                    self.state = _DONE
                    self.done = True
                    break
                self.trailer_bytes += len(line)
                if self.trailer_bytes > MAX_TRAILER:
                    raise self.error("chunked trailer too large")
                self._trailer_line(line)
        return pieces, pos

    def _size_line(self, line: bytes) -> None:
        semicolon = line.find(b";")
        size = line if semicolon == -1 else line[:semicolon]
        # No whitespace allowed around the size (a classic smuggling vector).
        if not size or len(size) > 16 or size.translate(None, HEX):
            raise self.error("invalid chunk size")
        if semicolon != -1:
            extension = line[semicolon:]
            # Extensions are relayed as received: no control bytes may pass through.
            if extension.translate(None, VALUE_BAD) != extension:
                raise self.error("invalid chunk extension")
        self.remaining = int(size, 16)
        if self.remaining == 0:
            self.state = _TRAILER
        else:
            self.state = _DATA

    def _trailer_line(self, line: bytes) -> None:
        # Trailer fields are relayed as received, so they must be what a header line may be.
        colon = line.find(b":")
        if colon <= 0 or line[:colon].translate(None, TOKEN):
            raise self.error("invalid trailer field")
        value = line[colon + 1 :]
        if value.translate(None, VALUE_BAD) != value:
            raise self.error("invalid trailer field")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body, framed. Never call it with b"": that is the last chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"


def drop_header_lines(block: bytes, names: frozenset) -> bytes:
    """``block`` (header lines each ending CRLF) without the lines whose lower-case name is in ``names``."""
    kept = []
    for line in block.split(CRLF):
        if not line:
            continue
        colon = line.find(b":")
        if line[:colon].lower() in names:
            continue
        kept.append(line)
        kept.append(CRLF)
    return b"".join(kept)
