"""HTTP/1.1 message heads and chunked framing, sans-IO (RFC 9112).

Theory of operation
-------------------
The data plane finds the end of a head itself (``CRLFCRLF``) and hands the whole
head to ``parse_request_head`` / ``parse_response_head``. Working on the complete
head, rather than on per-header callbacks, lets the proxy forward the header block
as one slice when nothing in it must change.

Everything a proxy must understand is extracted (framing, Connection and what it
names, Host, Upgrade, Expect, X-Forwarded-For, X-Request-ID); every other header is
kept as the raw line the client sent. Anything that could be read two ways by two
parsers (the shapes of request smuggling) is refused: the request with a 400, the
response with a 502.

How it reads a head. One pass from the first byte to the last, with integer
indexes and 256-entry tables (``_TOKEN_TABLE[c]`` says whether byte ``c`` may be in
a header name), so that compiled, each byte costs a C array read; Python objects
are made only for what is returned: one slice per value, and a name only when it
is not one of the common names kept lower-case in ``_KNOWN_NAMES``. The forward
block is put together from runs of the head between the lines it drops.

Which error wins. A head can be wrong in several ways at once, and the answer must
not depend on which one the scan meets first. The checks are ranked: the framing
of the whole head (an incomplete head, then a bare CR or LF, then a NUL), then the
start line, then the number of header lines, then each header line in order, then
what the values mean (Content-Length, Host, ...), then the combinations (Host
missing, Transfer-Encoding with Content-Length, ...). A fault found early in the
scan is raised through ``_refuse``, which first looks for a higher-ranked fault in
the whole head; a fault in what a value means is only noted, and raised once every
line has passed.

This file is plain Python and is also compiled by Cython (``_http1_c``, with the C
types in ``_http1_c.pxd``); both must behave identically (tests feed both the same
random input). The byte loops are written for the compiled form, the one graylane
runs; in plain Python they cost more than bytes methods would, so the twin is the
slower fallback, except where a line may be long (chunk extensions, trailers), which
keeps bytes methods in both forms.
"""

from __future__ import annotations

from proxy.errors import (
    BadRequest,
    HeaderTooLarge,
    UpstreamProtocolError,
    UriTooLong,
    VersionNotSupported,
)

CRLF = b"\r\n"

# tchar from RFC 9110 5.6.2.
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
        b"tracestate",  # forwarded again only when the client's trace is continued (W3C 4.3)
        b"http2-settings",  # h2c upgrade smuggling: see _without_h2c
    ]
)
RESPONSE_DROP = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"]
)

HTTP11 = b"HTTP/1.1"
HTTP10 = b"HTTP/1.0"

# --- byte tables -------------------------------------------------------------------------------

# The bytes the scanners stop at.
_HT = 0x09
_LF = 0x0A
_CR = 0x0D
_SP = 0x20
_STAR = 0x2A
_COMMA = 0x2C
_SLASH = 0x2F
_COLON = 0x3A
_SEMICOLON = 0x3B
_QUESTION = 0x3F


def _table(members: bytes, value: int = 1) -> bytearray:
    """A 256-entry table: ``value`` at each byte of ``members``, 0 elsewhere."""
    table = bytearray(256)
    for byte in members:
        table[byte] = value
    return table


def _complement(bad: bytes) -> bytes:
    return bytes(byte for byte in range(256) if byte not in bad)


# What a byte of a header name says about the name (values of _TOKEN_TABLE, bits of _name_kind).
_N_UPPER = 2  # an upper-case letter: the name needs lower-casing
_N_UNDERSCORE = 4  # "_": the name may alias a dashed one (see parse_request_head)


def _token_table() -> bytes:
    """0 for a byte that is no tchar, else 1, or _N_UPPER for a letter A-Z, _N_UNDERSCORE for "_"."""
    table = _table(TOKEN)
    for byte in range(ord("A"), ord("Z") + 1):
        table[byte] = _N_UPPER
    table[ord("_")] = _N_UNDERSCORE
    return bytes(table)


_TOKEN_TABLE = _token_table()
_TARGET_TABLE = bytes(_table(_complement(TARGET_BAD)))
_HOST_TABLE = bytes(_table(HOST_CHARS))
# 0 for CR, LF, NUL and the other controls a value may not hold: a value scan stops at its CR.
_VALUE_TABLE = bytes(_table(_complement(VALUE_BAD)))
_HEX_TABLE = bytes(_table(HEX))
# Each byte lower-cased (ASCII letters only, as bytes.lower()).
_LOWER = bytes(range(256)).lower()

# --- header names ------------------------------------------------------------------------------

# What a header name means to the parsers; 0 is nothing special.
_F_CONTENT_LENGTH = 1
_F_HOST = 2
_F_X_REQUEST_ID = 3
_F_TRANSFER_ENCODING = 4
_F_CONNECTION = 5
_F_UPGRADE = 6
_F_EXPECT = 7
_F_X_FORWARDED_FOR = 8
_F_TRACEPARENT = 9
_F_DROPPED = 10  # dropped in both directions, nothing else to do
_F_REQUEST_DROPPED = 11  # dropped from requests, nothing else to do
_F_TRACESTATE = 12

# The names in this table come out of the parser as these very objects, with no slice to make
# and lower-case; every name a parser acts on must be here. Within a length, the more common first.
_KNOWN = {
    b"host": _F_HOST,
    b"content-length": _F_CONTENT_LENGTH,
    b"transfer-encoding": _F_TRANSFER_ENCODING,
    b"connection": _F_CONNECTION,
    b"upgrade": _F_UPGRADE,
    b"expect": _F_EXPECT,
    b"x-forwarded-for": _F_X_FORWARDED_FOR,
    b"traceparent": _F_TRACEPARENT,
    b"x-request-id": _F_X_REQUEST_ID,
    b"keep-alive": _F_DROPPED,
    b"proxy-connection": _F_DROPPED,
    b"te": _F_DROPPED,
    b"trailer": _F_DROPPED,
    b"x-forwarded-proto": _F_REQUEST_DROPPED,
    b"x-forwarded-host": _F_REQUEST_DROPPED,
    b"http2-settings": _F_REQUEST_DROPPED,  # only meaningful with an h2c upgrade, which is never forwarded
    b"date": 0,
    b"server": 0,
    b"content-type": 0,
    b"last-modified": 0,
    b"etag": 0,
    b"accept-ranges": 0,
    b"accept": 0,
    b"user-agent": 0,
    b"accept-encoding": 0,
    b"accept-language": 0,
    b"cookie": 0,
    b"referer": 0,
    b"origin": 0,
    b"authorization": 0,
    b"cache-control": 0,
    b"pragma": 0,
    b"if-none-match": 0,
    b"if-modified-since": 0,
    b"upgrade-insecure-requests": 0,
    b"sec-fetch-dest": 0,
    b"sec-fetch-mode": 0,
    b"sec-fetch-site": 0,
    b"sec-fetch-user": 0,
    b"priority": 0,
    b"dnt": 0,
    b"x-real-ip": 0,
    b"forwarded": 0,
    b"range": 0,
    b"tracestate": _F_TRACESTATE,
    b"baggage": 0,
    b"content-encoding": 0,
    b"content-language": 0,
    b"content-disposition": 0,
    b"content-range": 0,
    b"set-cookie": 0,
    b"location": 0,
    b"vary": 0,
    b"expires": 0,
    b"age": 0,
    b"via": 0,
    b"x-content-type-options": 0,
    b"x-frame-options": 0,
    b"strict-transport-security": 0,
    b"access-control-allow-origin": 0,
}
# The names sorted by length; those of length L are _KNOWN_NAMES[_KNOWN_FIRST[L]:_KNOWN_FIRST[L + 1]].
_KNOWN_NAMES = tuple(sorted(_KNOWN, key=len))
_KNOWN_CODES = bytes(_KNOWN[name] for name in _KNOWN_NAMES)
_KNOWN_INITIALS = bytes(name[0] for name in _KNOWN_NAMES)
_KNOWN_LONGEST = len(_KNOWN_NAMES[-1])
_KNOWN_FIRST = bytes(
    sum(1 for name in _KNOWN_NAMES if len(name) < length) for length in range(_KNOWN_LONGEST + 2)
)


def _drop_mask(drop: frozenset) -> int:
    """The bits ``1 << code`` of the codes of the names in ``drop``; a name is dropped iff its bit is set."""
    mask = 0
    for name in drop:
        mask |= 1 << _KNOWN.get(name, 0)
    if mask & 1 or any((name in drop) != bool(mask >> code & 1) for name, code in _KNOWN.items()):
        raise RuntimeError("the codes in _KNOWN do not tell the dropped names apart")
    return mask


_REQUEST_DROP_MASK = _drop_mask(REQUEST_DROP)
_RESPONSE_DROP_MASK = _drop_mask(RESPONSE_DROP)

# Methods given as these very objects (the request line is case-sensitive).
_METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")

# Bits of what a Connection header names.
_CLOSE = 1
_KEEP_ALIVE = 2
_UPGRADE = 4


# --- the heads ---------------------------------------------------------------------------------


class RequestHead:
    """What the data plane knows about one request once its head has been parsed.

    Produced by ``parse_request_head`` and read by routing; it holds bytes exactly as they
    came (header names lower-cased, values stripped of surrounding whitespace).
    """

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
        "tracestate",  # bytes | None: the client's tracestate, joined (removed from forward_headers)
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


class ResponseHead:
    __slots__ = (
        "status",  # int
        "http_minor",  # 0 or 1
        "reason",  # bytes
        "head",  # bytes: the whole head as received (``headers`` is read from it when asked for)
        "status_end",  # int: where the status line ends in head, its CRLF included
        "content_length",  # int, -1 when absent
        "chunked",  # bool
        "keep_alive",  # bool: the upstream lets us reuse the connection
        "upgrade",  # bytes | None
        # list[bytes]: joined, the status line as received and the header lines to forward (each
        # ending CRLF, hop-by-hop ones removed). The data plane appends its own lines and the body
        # to this list and joins once; the parser cuts pieces of head and joins nothing.
        "pieces",
        "verbatim",  # bool: the header lines are the upstream's own block, unchanged
    )

    @property
    def status_line(self) -> bytes:
        """The status line as received, with its CRLF."""
        return self.head[: self.status_end]

    @property
    def forward_headers(self) -> bytes:
        """The header lines to forward, hop-by-hop ones removed, each ending CRLF."""
        return b"".join(self.pieces)[self.status_end :]

    @property
    def headers(self) -> list:
        """list[tuple[bytes, bytes]]: (lower-case name, value) per header line, in order.

        Built when asked for: the data plane never needs it, and making a tuple per header of
        every response cost a third of the parse.
        """
        return _header_fields(self.head)


def _header_fields(head: bytes) -> list:
    """(lower-case name, value) of each header line of a head the parser has accepted."""
    fields = []
    for line in head.split(CRLF)[1:]:
        if line:
            colon = line.find(b":")
            fields.append((line[:colon].lower(), line[colon + 1 :].strip(b" \t")))
    return fields


# --- scanning helpers --------------------------------------------------------------------------
#
# The scans read a head through ``data``: in plain Python the head itself, compiled a C pointer
# to its bytes (declared in the .pxd), read and sliced without bounds checks. Every index stays
# in range because the parsers first check that the head ends with CRLFCRLF and each scan stops
# at a byte its table refuses, CR included: no scan passes the final CRLF.


def _refuse(head: bytes, error: type, fault: Exception) -> Exception:
    """``fault``, unless the head has a framing fault somewhere, which outranks every other."""
    crlf = head.count(CRLF)
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf:
        return error("bare CR or LF in message head")
    if b"\x00" in head:
        return error("NUL in message head")
    return fault


def _framing_fault(head: bytes, error: type) -> Exception:
    """The error for a head in which a bare CR, a bare LF or a NUL was seen."""
    return _refuse(head, error, error("NUL in message head"))


def _refuse_field(head: bytes, error: type, too_many: type, max_headers: int, fault: Exception) -> Exception:
    """``fault`` of a header line, unless the head is wrong in a way that outranks it."""
    framing = _refuse(head, error, None)
    if framing is not None:
        return framing
    if head.count(CRLF) - 2 > max_headers:
        return too_many("too many header fields")
    return fault


def _field_fault(data: bytes, start: int, error: type) -> Exception:
    """What is wrong with the header line at ``start``, whose name does not end at a colon."""
    i = start
    c = data[i]
    while c != _CR and c != _COLON:
        i += 1
        c = data[i]
    if c == _COLON and i > start:
        # Covers whitespace between the name and the colon as well.
        return error("invalid header name")
    if data[start] in (_SP, _HT):
        return error("obsolete line folding in header")
    return error("header line without a name")


def _name_end(data: bytes, i: int) -> int:
    """Where the run of token bytes from ``i`` ends."""
    table = _TOKEN_TABLE
    while table[data[i]]:
        i += 1
    return i


def _name_kind(data: bytes, start: int, end: int) -> int:
    """The _N_UPPER and _N_UNDERSCORE bits of the name data[start:end] (of tchars only)."""
    table = _TOKEN_TABLE
    kind = 0
    while start < end:
        kind |= table[data[start]]
        start += 1
    return kind


def _skip_blanks(data: bytes, start: int, end: int) -> int:
    """``start`` moved forward over spaces and tabs, not past ``end``."""
    while start < end:
        c = data[start]
        if c != _SP and c != _HT:
            break
        start += 1
    return start


def _trim_end(data: bytes, start: int, end: int) -> int:
    """``end`` moved back over the spaces and tabs before it, not before ``start``."""
    while end > start:
        c = data[end - 1]
        if c != _SP and c != _HT:
            break
        end -= 1
    return end


def _value_end(data: bytes, i: int) -> int:
    """Where the run of bytes a value may hold ends: at its CR, unless a bad byte comes first."""
    table = _VALUE_TABLE
    while table[data[i]]:
        i += 1
    return i


def _all_in(data: bytes, start: int, end: int, table: bytes) -> bool:
    while start < end:
        if not table[data[start]]:
            return False
        start += 1
    return True


def _equals(data: bytes, start: int, end: int, expected: bytes) -> bool:
    """data[start:end] == expected, without the slice."""
    if end - start != len(expected):
        return False
    i = 0
    while start < end:
        if data[start] != expected[i]:
            return False
        start += 1
        i += 1
    return True


def _equals_lower(data: bytes, start: int, end: int, expected: bytes) -> bool:
    """data[start:end].lower() == expected (lower-case), without the slices."""
    if end - start != len(expected):
        return False
    lower = _LOWER
    i = 0
    while start < end:
        if lower[data[start]] != expected[i]:
            return False
        start += 1
        i += 1
    return True


def _known_name(data: bytes, start: int, end: int) -> int:
    """The index in _KNOWN_NAMES of the name data[start:end] in any case, or -1."""
    length = end - start
    if length > _KNOWN_LONGEST:
        return -1
    initial = _LOWER[data[start]]
    k = _KNOWN_FIRST[length]
    stop = _KNOWN_FIRST[length + 1]
    while k < stop:
        if _KNOWN_INITIALS[k] == initial and _equals_lower(data, start, end, _KNOWN_NAMES[k]):
            return k
        k += 1
    return -1


def _is_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _content_length(data: bytes, start: int, end: int, previous: int) -> int:
    """The length the Content-Length value data[start:end] gives, after ``previous`` (-1: none yet).

    -2 when the value is malformed, -3 when it differs from ``previous`` or within itself:
    a list "5, 5" is allowed when every member is the same (RFC 9110 8.6).
    """
    result = previous
    while True:
        stop = start
        while stop < end and data[stop] != _COMMA:
            stop += 1
        first = _skip_blanks(data, start, stop)
        last = _trim_end(data, first, stop)
        if first == last or last - first > 18:
            return -2
        length = 0
        while first < last:
            c = data[first]
            if not _is_digit(c):
                return -2
            length = length * 10 + (c - 0x30)
            first += 1
        if result != -1 and result != length:
            return -3
        result = length
        if stop == end:
            return result
        start = stop + 1


def _connection_tokens(data: bytes, start: int, end: int, named: list) -> int:
    """The _CLOSE/_KEEP_ALIVE/_UPGRADE bits of the Connection value data[start:end].

    The value is a comma-separated list; each member is stripped of spaces and tabs and
    lower-cased, empty members are skipped; the members other than those three go to ``named``.
    """
    bits = 0
    while True:
        stop = start
        while stop < end and data[stop] != _COMMA:
            stop += 1
        first = _skip_blanks(data, start, stop)
        last = _trim_end(data, first, stop)
        if first < last:
            if _equals_lower(data, first, last, b"close"):
                bits |= _CLOSE
            elif _equals_lower(data, first, last, b"keep-alive"):
                bits |= _KEEP_ALIVE
            elif _equals_lower(data, first, last, b"upgrade"):
                bits |= _UPGRADE
            else:
                named.append(data[first:last].lower())
        if stop == end:
            return bits
        start = stop + 1


def _method(data: bytes, end: int) -> bytes:
    """data[0:end], as the constant of a common method when it is one."""
    methods = _METHODS
    for k in range(len(methods)):
        method = methods[k]
        if _equals(data, 0, end, method):
            return method
    return data[0:end]


def _split_lines(head: bytes) -> list:
    """The lines of a head whose framing is known to be right, without the final empty one."""
    lines = head.split(CRLF)
    # A head ends with CRLFCRLF, so split leaves two empty strings at the end.
    del lines[len(lines) - 2 :]
    return lines


def _forward_block(
    lines: list, fields: list, drop: frozenset, named: list, length: int, host: object, underscores: bool
) -> bytes:
    """Header lines to forward: the raw lines, minus ``drop`` and what Connection names.

    ``underscores`` drops the lines whose name holds "_" as well (a request's, in drop mode).

    ``length`` >= 0 asks for the Content-Length lines (a repeated header or a list such as
    "5, 5") to become one ``Content-Length: length`` line where the first of them stood, so the
    next recipient never has to resolve duplicates itself (RFC 9110 8.6). ``host``, when not
    None, is the value of the one Host line (replacing the received one, or first if none came).
    The parsers come here only in these rarer cases; otherwise they cut the block themselves.
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
        if underscores and name.find(b"_") != -1:
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


def _without_h2c(upgrade: bytes) -> object:
    """The Upgrade list without HTTP/2 (h2c, h2, HTTP/2.x), or None when nothing else is left.

    An h2c upgrade forwarded to an origin would switch it to HTTP/2 on a connection that
    graylane then relays blind: every later request on it would skip routing, auth and limits
    (h2c smuggling). WebSocket and other upgrades go on.
    """
    kept = []
    for member in upgrade.split(b","):
        protocol = member.strip(b" \t")
        if not protocol:
            continue
        name, _, version = protocol.lower().partition(b"/")
        if name == b"h2c" or name == b"h2" or (name == b"http" and version[:1] == b"2"):
            continue
        kept.append(protocol)
    return b", ".join(kept) if kept else None


def _absolute_form(head: bytes, target: bytes) -> tuple:
    """(host, path-and-query) of an absolute-form target (RFC 9112 3.2.2)."""
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
        raise _refuse(head, BadRequest, BadRequest("invalid request-target"))
    path_and_query = rest[cut:]
    if not path_and_query or path_and_query[:1] == b"?":
        path_and_query = b"/" + path_and_query
    return host, path_and_query


def _is_complete(data: bytes, n: int) -> bool:
    """Whether the n bytes end with CRLFCRLF (the sentinel every scan relies on)."""
    return n >= 4 and data[n - 4] == _CR and data[n - 3] == _LF and data[n - 2] == _CR and data[n - 1] == _LF


def _contains(data: bytes, start: int, end: int, c: int) -> bool:
    """Whether byte ``c`` is in data[start:end] (a short value: no slice, no bytes method call)."""
    while start < end:
        if data[start] == c:
            return True
        start += 1
    return False


# True in the compiled twin, whose __file__ is the extension: where plain Python is faster with a
# bytes method and C with a byte loop, each form takes its own way to the same answer.
_COMPILED = not __file__.endswith(".py")


def find_head_end(buf: bytes) -> int:
    """``buf.find(b"\\r\\n\\r\\n")``: where the head at the start of ``buf`` ends, or -1.

    The data plane calls it on every head it reads. Compiled, it skips on the last byte of each
    candidate (Horspool): a byte that is neither CR nor LF is in no match, so the scan moves on
    by four; an LF that ends no match can only be the pattern's second byte, so by two; a CR by
    one. The method call alone would cost more than this scan of a usual head.
    """
    if not _COMPILED:
        return buf.find(b"\r\n\r\n")
    data = buf
    n = len(buf)
    i = 3  # the last byte of the first candidate
    while i < n:
        c = data[i]
        if c == _LF:
            if data[i - 1] == _CR and data[i - 2] == _LF and data[i - 3] == _CR:
                return i - 3
            i += 2
        elif c == _CR:
            i += 1
        else:
            i += 4
    return -1


# --- requests ----------------------------------------------------------------------------------


def parse_request_head(
    head: bytes, max_uri: int, max_headers: int, drop_underscores: bool = False
) -> RequestHead:
    """Parse a complete request head (start line through the empty line).

    Raises BadRequest (400), UriTooLong (414), HeaderTooLarge (431) or
    VersionNotSupported (505).

    A header name holding "_" is refused (400), or with ``drop_underscores`` left out of
    ``headers`` and of the forward block: origin stacks that map names to CGI/WSGI variables
    read ``Content_Length`` as ``Content-Length`` and ``X_User`` as ``X-User``, so forwarding
    one would let it stand for a header graylane checked (or did not see) itself.
    """
    error = BadRequest
    data = head  # compiled: a pointer to the bytes of head (see "scanning helpers")
    n = len(head)
    if not _is_complete(data, n):
        raise error("incomplete message head")

    # The request line, split at every space: method SP request-target SP HTTP-version.
    spaces = 0
    sp1 = 0
    sp2 = 0
    i = 0
    c = data[0]
    while c != _CR:
        if c == _SP:
            if spaces == 0:
                sp1 = i
            elif spaces == 1:
                sp2 = i
            spaces += 1
        elif c == _LF or c == 0:
            raise _framing_fault(head, error)
        i += 1
        c = data[i]
    eol = i
    if data[eol + 1] != _LF:
        raise _framing_fault(head, error)
    if spaces != 2:
        if spaces > 0:
            target_end = sp2 if spaces > 2 else eol
            if target_end - sp1 - 1 > max_uri:
                raise _refuse(head, error, UriTooLong("request-target too long"))
        raise _refuse(head, error, error("malformed request line"))
    if sp1 == 0 or not _all_in(data, 0, sp1, _TOKEN_TABLE):
        raise _refuse(head, error, error("invalid method"))
    tstart = sp1 + 1
    if sp2 - tstart > max_uri:
        raise _refuse(head, error, UriTooLong("request-target too long"))
    question = -1
    table = _TARGET_TABLE
    i = tstart
    while i < sp2:
        c = data[i]
        if not table[c]:
            break
        if c == _QUESTION and question == -1:
            question = i
        i += 1
    if i < sp2 or sp2 == tstart:
        raise _refuse(head, error, error("invalid request-target"))
    vstart = sp2 + 1
    if _equals(data, vstart, eol, HTTP11):
        minor = 1
    elif _equals(data, vstart, eol, HTTP10):
        minor = 0
    elif (
        eol - vstart == 8
        and _equals(data, vstart, vstart + 5, b"HTTP/")
        and _is_digit(data[vstart + 5])
        and _is_digit(data[vstart + 7])
    ):
        raise _refuse(head, error, VersionNotSupported("HTTP version not supported"))
    else:
        raise _refuse(head, error, error("malformed HTTP version"))

    method = _method(data, sp1)
    target = data[tstart:sp2]
    host = None
    absolute = False
    c = data[tstart]
    if c == _SLASH:
        if question == -1:
            path = target
            query = b""
        else:
            path = data[tstart:question]
            query = data[question + 1 : sp2]
    elif target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        # absolute-form: the authority replaces Host (RFC 9112 3.2.2)
        host, path_and_query = _absolute_form(head, target)
        cut = path_and_query.find(b"?")
        if cut == -1:
            path = path_and_query
            query = b""
        else:
            path = path_and_query[:cut]
            query = path_and_query[cut + 1 :]
        absolute = True
    elif sp2 - tstart == 1 and c == _STAR and method == b"OPTIONS":
        path = target
        query = b""
    else:
        # authority-form (CONNECT) and anything else: graylane is not a forward proxy
        raise _refuse(head, error, error("invalid request-target"))

    # The header lines: a line that is wrong is raised at once; a value whose meaning is
    # wrong is noted in ``fault`` and raised once every line has passed.
    fields = []
    count = 0
    fault = None
    content_length = -1
    length_lines = 0
    transfer_encoding = None
    connection = 0
    named = []
    upgrade = None
    expect_continue = False
    xff = None
    request_id = None
    traceparent = None
    tracestate = None
    traceparent_seen = False
    host_seen = False
    rebuild = False
    underscored = False  # a name with "_" was dropped
    pieces = None  # the forward block, as the runs of the head between dropped lines
    run = eol + 2
    stop = n - 2
    i = run
    while i < stop:
        count += 1
        start = i
        i = _name_end(data, i)
        if data[i] != _COLON or i == start:
            raise _refuse_field(head, error, HeaderTooLarge, max_headers, _field_fault(data, start, error))
        k = _known_name(data, start, i)
        kind = 0
        if k >= 0:
            name = _KNOWN_NAMES[k]
            code = _KNOWN_CODES[k]
        else:
            name = data[start:i]
            kind = _name_kind(data, start, i)
            if kind & _N_UPPER:
                name = name.lower()
            code = 0
        vstart = _skip_blanks(data, i + 1, stop)
        i = _value_end(data, vstart)
        if data[i] != _CR or data[i + 1] != _LF:
            fault_here = error("invalid character in header value")
            raise _refuse_field(head, error, HeaderTooLarge, max_headers, fault_here)
        vend = _trim_end(data, vstart, i)
        value = data[vstart:vend]
        fields.append((name, value))
        i += 2
        if kind & _N_UNDERSCORE:
            if not drop_underscores:
                if fault is None:
                    fault = "underscore in header name"
                continue
            underscored = True  # dropped below, like a hop-by-hop line (its code is 0)
        elif code == 0 or fault is not None:
            continue
        if kind & _N_UNDERSCORE or (_REQUEST_DROP_MASK >> code) & 1:
            rebuild = True
            if pieces is None:
                pieces = []
            if run < start:
                pieces.append(data[run:start])
            run = i
            if code == _F_TRANSFER_ENCODING:
                transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
            elif code == _F_CONNECTION:
                connection |= _connection_tokens(data, vstart, vend, named)
            elif code == _F_UPGRADE:
                upgrade = value
            elif code == _F_EXPECT:
                if _equals_lower(data, vstart, vend, b"100-continue"):
                    expect_continue = True
            elif code == _F_X_FORWARDED_FOR:
                xff = value if xff is None else xff + b", " + value
            elif code == _F_TRACEPARENT:
                # W3C: more than one traceparent is invalid; a new trace starts.
                traceparent = None if traceparent_seen else value
                traceparent_seen = True
            elif code == _F_TRACESTATE:
                tracestate = value if tracestate is None else tracestate + b"," + value
        elif code == _F_CONTENT_LENGTH:
            content_length = _content_length(data, vstart, vend, content_length)
            if content_length == -2:
                fault = "malformed Content-Length"
            elif content_length == -3:
                fault = "differing Content-Length values"
            length_lines += 2 if _contains(data, vstart, vend, _COMMA) else 1
        elif code == _F_HOST:
            if host_seen:
                fault = "more than one Host header"
            else:
                host_seen = True
                if not _all_in(data, vstart, vend, _HOST_TABLE):
                    fault = "invalid Host header"
                elif host is None:
                    host = value
        elif code == _F_X_REQUEST_ID and request_id is None:
            request_id = value
    # Every byte has been looked at: the framing is right.
    if count > max_headers:
        raise HeaderTooLarge("too many header fields")
    if fault is not None:
        raise error(fault)
    if minor == 1 and not host_seen:
        raise error("missing Host header")

    chunked = False
    if transfer_encoding is not None:
        if content_length != -1:
            raise error("both Transfer-Encoding and Content-Length")
        if minor == 0:
            raise error("Transfer-Encoding in an HTTP/1.0 request")
        if transfer_encoding.strip(b" \t").lower() != b"chunked":
            raise error("unsupported Transfer-Encoding (only a single chunked is accepted)")
        chunked = True

    if minor == 1:
        keep_alive = not (connection & _CLOSE)
    else:
        keep_alive = (connection & (_CLOSE | _KEEP_ALIVE)) == _KEEP_ALIVE
    if upgrade is not None and (minor == 0 or not (connection & _UPGRADE)):
        # RFC 9110 7.8: Upgrade counts only when Connection names it, and never in HTTP/1.0.
        upgrade = None
    if upgrade is not None:
        upgrade = _without_h2c(upgrade)
    if named:
        if b"host" in named or b"content-length" in named:
            raise error("Connection names an end-to-end header")
        rebuild = True
    merged_length = -1
    if length_lines > 1:
        merged_length = content_length
        rebuild = True
    if absolute:
        # RFC 9112 3.2.2: the target's authority overrides Host. Routing used the authority, so the
        # upstream must get it too, not a Host line that says something else.
        rebuild = True

    req = RequestHead.__new__(RequestHead)
    req.method = method
    req.target = target
    req.path = path
    req.query = query
    req.http_minor = minor
    if underscored:
        # Dropped lines are not seen by routing either; the forward block needed the aligned list.
        kept_fields = [field for field in fields if field[0].find(b"_") == -1]
    else:
        kept_fields = fields
    req.headers = kept_fields
    req.host = host
    req.content_length = content_length
    req.chunked = chunked
    req.keep_alive = keep_alive
    req.upgrade = upgrade
    req.expect_continue = expect_continue
    req.xff = xff
    req.request_id = request_id
    req.traceparent = traceparent
    req.tracestate = tracestate
    if not rebuild:
        # Nothing to drop: forward the block as the client sent it, in one slice.
        req.forward_headers = data[eol + 2 : stop]
    elif named or merged_length >= 0 or absolute:
        lines = _split_lines(head)
        replaced_host = host if absolute else None
        req.forward_headers = _forward_block(
            lines, fields, REQUEST_DROP, named, merged_length, replaced_host, underscored
        )
    else:
        if run < stop:
            pieces.append(data[run:stop])
        req.forward_headers = b"".join(pieces)
    return req


# --- responses ---------------------------------------------------------------------------------


def parse_response_head(head: bytes, max_headers: int) -> ResponseHead:
    """Parse a complete response head; any doubt is an UpstreamProtocolError (502)."""
    error = UpstreamProtocolError
    data = head  # compiled: a pointer to the bytes of head (see "scanning helpers")
    n = len(head)
    if not _is_complete(data, n):
        raise error("incomplete message head")

    # The status line: HTTP-version SP 3DIGIT [SP reason-phrase].
    i = 0
    c = data[0]
    while c != _CR:
        if c == _LF or c == 0:
            raise _framing_fault(head, error)
        i += 1
        c = data[i]
    eol = i
    if data[eol + 1] != _LF:
        raise _framing_fault(head, error)
    if eol < 12 or data[8] != _SP:
        raise _refuse(head, error, error("malformed status line"))
    if _equals(data, 0, 8, HTTP11):
        minor = 1
    elif _equals(data, 0, 8, HTTP10):
        minor = 0
    else:
        raise _refuse(head, error, error("unsupported HTTP version from upstream"))
    d1 = data[9]
    d2 = data[10]
    d3 = data[11]
    if not (_is_digit(d1) and _is_digit(d2) and _is_digit(d3)) or (eol > 12 and data[12] != _SP):
        raise _refuse(head, error, error("malformed status code"))
    status = (d1 - 0x30) * 100 + (d2 - 0x30) * 10 + (d3 - 0x30)
    if status < 100 or status > 599:
        # RFC 9110 15: 100..599; a code outside has no class to act on.
        raise _refuse(head, error, error("malformed status code"))
    if not _all_in(data, 13, eol, _VALUE_TABLE):
        # The status line is relayed as received: no control bytes may pass through.
        raise _refuse(head, error, error("invalid character in reason phrase"))
    if eol <= 13:
        reason = b""
    elif eol == 15 and data[13] == 0x4F and data[14] == 0x4B:
        reason = b"OK"
    else:
        reason = data[13:eol]

    # The header lines, as in parse_request_head (but no (name, value) list: see ResponseHead.headers).
    count = 0
    fault = None
    content_length = -1
    length_lines = 0
    transfer_encoding = None
    connection = 0
    named = []
    upgrade = None
    rebuild = False
    pieces = None
    run = 0  # the start of the next piece to keep: the status line comes first
    stop = n - 2
    i = eol + 2
    while i < stop:
        count += 1
        start = i
        i = _name_end(data, i)
        if data[i] != _COLON or i == start:
            raise _refuse_field(head, error, error, max_headers, _field_fault(data, start, error))
        k = _known_name(data, start, i)
        code = _KNOWN_CODES[k] if k >= 0 else 0
        vstart = _skip_blanks(data, i + 1, stop)
        i = _value_end(data, vstart)
        if data[i] != _CR or data[i + 1] != _LF:
            fault_here = error("invalid character in header value")
            raise _refuse_field(head, error, error, max_headers, fault_here)
        vend = _trim_end(data, vstart, i)
        i += 2
        if code == 0 or fault is not None:
            continue
        if (_RESPONSE_DROP_MASK >> code) & 1:
            rebuild = True
            if pieces is None:
                pieces = []
            if run < start:
                pieces.append(data[run:start])
            run = i
            if code == _F_TRANSFER_ENCODING:
                value = data[vstart:vend]
                transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
            elif code == _F_CONNECTION:
                connection |= _connection_tokens(data, vstart, vend, named)
            elif code == _F_UPGRADE:
                upgrade = data[vstart:vend]
        elif code == _F_CONTENT_LENGTH:
            content_length = _content_length(data, vstart, vend, content_length)
            if content_length == -2:
                fault = "malformed Content-Length"
            elif content_length == -3:
                fault = "differing Content-Length values"
            length_lines += 2 if _contains(data, vstart, vend, _COMMA) else 1
    # Every byte has been looked at: the framing is right.
    if count > max_headers:
        raise error("too many header fields")
    if fault is not None:
        raise error(fault)

    chunked = False
    if transfer_encoding is not None:
        if transfer_encoding.strip(b" \t").lower() != b"chunked":
            raise error("unsupported Transfer-Encoding from upstream")
        if content_length != -1:
            raise error("both Transfer-Encoding and Content-Length from upstream")
        chunked = True

    if minor == 1:
        keep_alive = not (connection & _CLOSE)
    else:
        keep_alive = (connection & (_CLOSE | _KEEP_ALIVE)) == _KEEP_ALIVE
    if b"content-length" in named:
        # Dropping it would leave the client a body without framing.
        raise error("Connection names Content-Length")
    merged_length = -1
    if length_lines > 1:
        merged_length = content_length
        rebuild = True

    resp = ResponseHead.__new__(ResponseHead)
    resp.status = status
    resp.http_minor = minor
    resp.reason = reason
    resp.head = head
    resp.status_end = eol + 2
    resp.content_length = content_length
    resp.chunked = chunked
    resp.keep_alive = keep_alive
    resp.upgrade = upgrade
    if not rebuild and not named:
        resp.pieces = [data[:stop]]
        resp.verbatim = True
    elif named or merged_length >= 0:
        lines = _split_lines(head)
        fields = _header_fields(head)
        block = _forward_block(lines, fields, RESPONSE_DROP, named, merged_length, None, False)
        resp.pieces = [data[: eol + 2], block]
        resp.verbatim = False
    else:
        if run < stop:
            pieces.append(data[run:stop])
        resp.pieces = pieces
        resp.verbatim = False
    return resp


# --- chunked bodies ----------------------------------------------------------------------------

# Chunked decoder states
_SIZE = 0  # reading a chunk-size line
_DATA = 1  # reading chunk data
_DATA_END = 2  # reading the CRLF after chunk data
_TRAILER = 3  # reading trailer lines after the last chunk
_DONE = 4

MAX_CHUNK_LINE = 4096
MAX_TRAILER = 16384
_MAX_CHUNK_LINE = MAX_CHUNK_LINE
_MAX_TRAILER = MAX_TRAILER


def _find_lf(data: bytes, start: int, end: int) -> int:
    """data.find(b"\\n", start); a chunk-size line is short, so its first bytes are looked at one by one."""
    stop = start + 18 if end - start > 18 else end
    i = start
    while i < stop:
        if data[i] == _LF:
            return i
        i += 1
    return -1 if stop == end else data.find(b"\n", stop)


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
                take = end - pos
                if self.remaining < take:
                    take = self.remaining
                # Sliced as bytes: a feed that is all data goes on as the same object, uncopied.
                pieces.append(data[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self.state = _DATA_END
                continue
            if state == _DATA_END:
                # Exactly CRLF follows chunk data; self.line holds the CR when it came alone.
                if not self.line:
                    if data[pos] != _CR or (pos + 1 < end and data[pos + 1] != _LF):
                        raise self.error("missing CRLF after chunk data")
                    if pos + 1 == end:
                        self.line = b"\r"
                        pos = end
                        continue
                    pos += 2
                else:
                    if data[pos] != _LF:
                        raise self.error("missing CRLF after chunk data")
                    pos += 1
                self.line = b""
                self.state = _SIZE
                continue
            # The other states read lines; a line may arrive in several pieces. Lines can be
            # long (trailers): what may run over a whole line uses bytes methods, fast in both forms.
            newline = _find_lf(data, pos, end)
            if newline == -1:
                self.line += data[pos:]
                pos = end
                # MAX_CHUNK_LINE bytes and the CR still fit; one more never will.
                if len(self.line) > _MAX_CHUNK_LINE + 1:
                    raise self.error("chunk line too long")
                break
            # The line is line[start:last], then (when it is right) CR LF.
            if self.line:
                line = self.line + data[pos : newline + 1]
                self.line = b""
                start = 0
                last = len(line) - 2
            else:
                line = data
                start = pos
                last = newline - 1
            pos = newline + 1
            if last - start > _MAX_CHUNK_LINE:
                raise self.error("chunk line too long")
            if last < start or line[last] != _CR:
                raise self.error("bare LF in chunked body")
            if state == _SIZE:
                self._size_line(line, start, last)
            else:  # _TRAILER
                if last == start:
                    self.state = _DONE
                    self.done = True
                    break
                self.trailer_bytes += last - start
                if self.trailer_bytes > _MAX_TRAILER:
                    raise self.error("chunked trailer too large")
                self._trailer_line(line[start:last])
        return pieces, pos

    def _size_line(self, line: bytes, start: int, end: int) -> None:
        """chunk-size [chunk-ext], in line[start:end]."""
        # A size has at most 16 digits: past 17 bytes without a ";" it is wrong wherever the ";" is.
        limit = end if end - start <= 17 else start + 17
        semicolon = start
        while semicolon < limit and line[semicolon] != _SEMICOLON:
            semicolon += 1
        # No whitespace allowed around the size (a classic smuggling vector).
        if semicolon == start or semicolon - start > 16 or not _all_in(line, start, semicolon, _HEX_TABLE):
            raise self.error("invalid chunk size")
        if semicolon < end:
            extension = line[semicolon:end]
            # Extensions are relayed as received: no control bytes may pass through.
            if extension.translate(None, VALUE_BAD) != extension:
                raise self.error("invalid chunk extension")
        size = 0
        while start < semicolon:
            c = line[start]
            # 0-9, then a-f and A-F (0x20 makes a letter lower-case)
            size = size * 16 + (c - 0x30 if c <= 0x39 else (c | 0x20) - 0x57)
            start += 1
        self.remaining = size
        if size == 0:
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
    # Usually none of the names is there (a plan that sets a header removes the sent one first):
    # one lower() and a find per name settle that without splitting the block.
    lowered = block.lower()
    for name in names:
        if lowered.find(name) != -1:
            break
    else:
        return block
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
