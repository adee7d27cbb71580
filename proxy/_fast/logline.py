# cython: annotation_typing=False
"""JSON access-log lines: the formatter of ``proxy.observe.accesslog``.

Theory of operation
-------------------
``LineFormatter.format(entries, skipped)`` turns a batch of entries (the tuple described in
``proxy.observe.accesslog.Entry``) into the bytes of their JSON lines, and calls
``skipped(entry, error)`` for each entry it cannot format (TypeError, ValueError,
AttributeError, OverflowError or OSError on a value of the wrong type or range): a bad entry
costs its own line, never the batch.

What a line holds is defined by ``Line`` and ``LineFormatter._format_structs``: the entry's values,
converted (bytes decoded as ASCII with backslash escapes, seconds to whole microseconds shown
as milliseconds, the sticky hash as 16 hex digits, "" and None as null) and encoded by msgspec.
The pure-Python twin formats every line that way (about 1 us a line).

The compiled twin writes the same bytes directly into one reusable buffer (a few hundred ns a
line): constant keys are copied; bytes that need no JSON escaping (printable ASCII other than
``"`` and ``\\``, the usual request id and path) are copied between quotes as they are; ints,
milliseconds and the hash are written digit by digit; the text of the second is cached until it
changes; the JSON text of each str value (client, route, version, endpoint, flags) and of each
method is kept in a small cache, made by msgspec on a miss, as are the labels and any bytes that
need escaping. An entry with a value outside what that path handles exactly (another type, a
negative or huge number, a NaN) goes through ``_format_structs``, as in the pure twin.

Milliseconds: ``int(seconds * 1e6) / 1000.0`` encoded by msgspec is the shortest repr of that
float; for 0 <= microseconds < 1e15 that is the decimal ``us / 1000`` without trailing zeros
after the first decimal ("0.123", "2.1", "30000.0"): the float is the one nearest that decimal,
and a shorter decimal, a multiple of 0.01, lies at least 0.001 away while the spacing of floats
below 1e12 is under 0.0002. The compiled twin writes that decimal.

This file is plain Python and is also compiled by Cython as ``_logline_c`` with the C types of
``_logline_c.pxd``; both must return identical bytes (tests compare them).
"""

from __future__ import annotations

import time

import msgspec

# True in the compiled twin, whose __file__ is the extension: the two forms take different ways
# to the same bytes (see the module docstring).
_COMPILED = not __file__.endswith(".py")

_encoder = msgspec.json.Encoder()
_encode = _encoder.encode
_encode_lines = _encoder.encode_lines
_strftime = time.strftime
_gmtime = time.gmtime

_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, OSError)
# ".000Z" ... ".999Z": the end of an RFC 3339 UTC time with milliseconds.
MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class Line(msgspec.Struct, gc=False):
    """One access-log line; the field order is the order in the JSON object.

    ``gc=False``: a batch of these is short-lived and holds no cycles; untracked, it does not
    trigger garbage collections.
    """

    time: str
    request_id: str | None
    client: str | None
    method: str | None
    path: str | None
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: float
    upstream_ms: float | None
    route: str | None
    version: str | None
    endpoint: str | None
    labels: dict[str, str] | None
    sticky_hash: str | None
    flags: str


# --- the compiled twin's pieces ------------------------------------------------------------------

# 1 for the bytes a JSON string holds as they are: printable ASCII except '"' and '\\'.
_CLEAN = bytes(32 <= c <= 126 and c not in (34, 92) for c in range(256))
_CACHE_MAX = 1024  # texts kept per cache; a full cache starts again empty
_BUFFER_SIZE = 1 << 16  # the buffer a formatter starts with, and goes back to after a huge batch
_BUFFER_KEEP = 1 << 20
_LINE_FIXED = 512  # a bound on a line's bytes besides its variable texts (keys, numbers, time)
_MAX_SECONDS = 1e9  # durations the fast path writes (under 1e15 microseconds)
_MAX_TIME = 1e11  # times the fast path takes (the year 5138)

_K_REQUEST_ID_Q = b'Z","request_id":"'
_K_REQUEST_ID = b'Z","request_id":'
_K_CLIENT_Q = b'","client":'
_K_CLIENT = b',"client":'
_K_METHOD = b',"method":'
_K_PATH_Q = b',"path":"'
_K_PATH = b',"path":'
_K_STATUS_Q = b'","status":'
_K_STATUS = b',"status":'
_K_BYTES_IN = b',"bytes_in":'
_K_BYTES_OUT = b',"bytes_out":'
_K_DURATION = b',"duration_ms":'
_K_UPSTREAM = b',"upstream_ms":'
_K_UPSTREAM_NULL = b',"upstream_ms":null'
_K_ROUTE = b',"route":'
_K_VERSION = b',"version":'
_K_ENDPOINT = b',"endpoint":'
_K_LABELS = b',"labels":'
_K_STICKY = b',"sticky_hash":"'
_K_FLAGS_Q = b'","flags":'
_K_STICKY_NULL = b',"sticky_hash":null,"flags":'
_END = b"}\n"
_NULL = b"null"
_DASH = b'"-"'


def _escaped(value: object) -> bytes:
    """The JSON text of an entry's bytes field: its ASCII decoding with backslash escapes."""
    return _encode(value.decode("ascii", "backslashreplace"))


def _bytes_text(value: object) -> bytes | None:
    """The JSON text of a bytes field: the value itself when clean (unquoted), its escaped and
    quoted text when not, null for None; None for any other type (the entry goes the msgspec way)."""
    if type(value) is bytes:
        return value if _is_clean(value) else _escaped(value)
    if value is None:
        return _NULL
    return None


def _is_clean(data: bytes) -> bool:
    """Whether every byte of ``data`` stands for itself inside a JSON string."""
    view = data  # compiled: const unsigned char* pointers
    table = _CLEAN
    n = len(data)
    i = 0
    while i < n:
        if not table[view[i]]:
            return False
        i += 1
    return True


def _put(buf: bytearray, pos: int, text: bytes) -> int:
    """Copy ``text`` to ``buf`` at ``pos``; the position after it (compiled form only)."""
    data = text  # compiled: a const unsigned char*
    n = len(text)
    memcpy(buf + pos, data, n)  # noqa: F821 - libc's, cimported by _logline_c.pxd
    return pos + n


def _put_uint(buf: bytearray, pos: int, n: int) -> int:
    """Write ``n`` in decimal to ``buf`` at ``pos``; the position after it (compiled form only)."""
    end = pos + 1
    rest = n // 10
    while rest:
        rest //= 10
        end += 1
    i = end
    while True:
        i -= 1
        buf[i] = 48 + n % 10
        n //= 10
        if not n:
            return end


def _put_millis(buf: bytearray, pos: int, us: int) -> int:
    """Write ``us`` microseconds as the shortest repr of ``us / 1000.0`` (compiled form only)."""
    pos = _put_uint(buf, pos, us // 1000)
    fraction = us % 1000
    buf[pos] = 46  # "."
    buf[pos + 1] = 48 + fraction // 100
    if fraction % 100 == 0:
        return pos + 2
    buf[pos + 2] = 48 + fraction // 10 % 10
    if fraction % 10 == 0:
        return pos + 3
    buf[pos + 3] = 48 + fraction % 10
    return pos + 4


class LineFormatter:
    """Formats batches of entries; keeps what makes consecutive lines cheap (caches, a buffer)."""

    def __init__(self) -> None:
        self._second = -1  # the second whose text is in _second_text (the struct path)
        self._second_text = ""
        self._fast_second = -1  # the same for the compiled path: '{"time":"2026-01-01T00:00:00'
        self._fast_second_text = b""
        self._names: dict = {}  # str -> its JSON text
        self._methods: dict = {}  # bytes -> the JSON text of its escaped decoding
        self._targets: dict = {}  # endpoint -> (route, version, their keys and texts)
        self._buffer = bytearray(_BUFFER_SIZE)

    def format(self, entries: list, skipped: object) -> bytes:
        """JSON lines (each ending in a newline) for ``entries``; ``skipped(entry, error)`` per bad one."""
        if not _COMPILED:
            return self._format_structs(entries, skipped)
        pos = 0
        for entry in entries:
            try:
                pos = self._put_line(entry, pos, skipped)
            except _ERRORS as error:
                skipped(entry, error)
        buf = self._buffer  # compiled: its unsigned char*
        data = buf[:pos]
        if len(self._buffer) > _BUFFER_KEEP:
            self._buffer = bytearray(_BUFFER_SIZE)
        return data

    # --- every line through msgspec (the pure twin; odd entries in the compiled one) -------------

    def _format_structs(self, entries: list, skipped: object) -> bytes:
        """``format`` by msgspec: a Line per entry, one encode_lines. This defines what a line holds."""
        lines = []
        kept = []
        second = self._second
        second_text = self._second_text
        millis = MILLIS
        for entry in entries:
            try:
                (t, rid, client, method, path, status, b_in, b_out, dur, up, route, version, endpoint, labels,
                 sticky, flags) = entry  # fmt: skip
                ms = int(t * 1000.0)
                if ms // 1000 != second:
                    # gmtime raises OSError past the year 10**9: the text first, so that the cache
                    # never pairs a second with the text of another.
                    second_text = _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(ms // 1000))
                    second = ms // 1000
                lines.append(
                    Line(
                        second_text + millis[ms % 1000],
                        None if rid is None else rid.decode("ascii", "backslashreplace"),
                        client or None,
                        None if method is None else method.decode("ascii", "backslashreplace"),
                        None if path is None else path.decode("ascii", "backslashreplace"),
                        status,
                        b_in,
                        b_out,
                        # Whole microseconds over 1000 print as at most 3 decimals (round() costs 3x more).
                        int(dur * 1e6) / 1000.0,
                        None if up < 0 else int(up * 1e6) / 1000.0,
                        route or None,
                        version or None,
                        endpoint or None,
                        labels or None,
                        None if sticky < 0 else sticky.to_bytes(8).hex(),  # 2x faster than :016x
                        flags or "-",
                    )
                )
            except _ERRORS as error:
                # A malformed entry (a bug in its producer) costs its own line, not the batch.
                skipped(entry, error)
                continue
            kept.append(entry)
        self._second = second
        self._second_text = second_text
        try:
            return _encode_lines(lines)
        except _ERRORS:
            pass
        # Only reached when a value of some entry is not JSON-encodable.
        out = []
        for line, entry in zip(lines, kept, strict=True):
            try:
                out.append(_encode(line) + b"\n")
            except _ERRORS as error:
                skipped(entry, error)
        return b"".join(out)

    # --- the compiled path -----------------------------------------------------------------------

    def _put_line(self, entry: object, pos: int, skipped: object) -> int:
        """Write the line of ``entry`` at ``pos`` in the buffer; the position after it."""
        (t, rid, client, method, path, status, b_in, b_out, dur, up, route, version, endpoint, labels,
         sticky, flags) = entry  # fmt: skip

        # Everything that may fail or send the entry the msgspec way comes first: nothing is
        # written before the line is known to be whole.
        if type(t) is not float:
            return self._put_struct(entry, pos, skipped)
        seconds = t  # a C double
        if not 0.0 <= seconds < _MAX_TIME:
            return self._put_struct(entry, pos, skipped)
        ms = int(seconds * 1000.0)  # C: a truncating cast, as int() of the same double
        if type(dur) is not float:
            return self._put_struct(entry, pos, skipped)
        seconds = dur
        if not 0.0 <= seconds < _MAX_SECONDS:
            return self._put_struct(entry, pos, skipped)
        duration_us = int(seconds * 1e6)
        if type(up) is not float:
            return self._put_struct(entry, pos, skipped)
        seconds = up
        if seconds < 0.0:
            upstream_us = -1
        elif seconds < _MAX_SECONDS:
            upstream_us = int(seconds * 1e6)
        else:  # huge, or NaN
            return self._put_struct(entry, pos, skipped)
        if not (
            type(status) is int
            and type(b_in) is int
            and type(b_out) is int
            and 0 <= status <= 0x7FFFFFFFFFFFFFFF
            and 0 <= b_in <= 0x7FFFFFFFFFFFFFFF
            and 0 <= b_out <= 0x7FFFFFFFFFFFFFFF
        ):
            return self._put_struct(entry, pos, skipped)
        if type(sticky) is not int:
            return self._put_struct(entry, pos, skipped)
        has_sticky = sticky >= 0
        hash64 = 0
        if has_sticky:
            hash64 = sticky  # C: OverflowError past 64 bits, as int.to_bytes(8)

        rid_text = _bytes_text(rid)
        path_text = _bytes_text(path)
        if rid_text is None or path_text is None:
            return self._put_struct(entry, pos, skipped)
        # A clean value is its own text, written between quotes the keys around it carry.
        rid_clean = rid_text is rid
        path_clean = path_text is path
        if type(method) is bytes:
            methods = self._methods
            method_text = methods.get(method)
            if method_text is None:
                method_text = _escaped(method)
                if len(methods) >= _CACHE_MAX:
                    methods.clear()
                methods[method] = method_text
        elif method is None:
            method_text = _NULL
        else:
            return self._put_struct(entry, pos, skipped)
        client_text = self._name(client)
        if flags is None or (type(flags) is str and (len(flags) == 0 or flags == "-")):
            flags_text = _DASH
        else:
            flags_text = self._name(flags)
        if client_text is None or flags_text is None:
            return self._put_struct(entry, pos, skipped)
        # route, version and endpoint: one text per endpoint, kept while its route and version
        # are the same objects (the data plane passes the names its config holds).
        target = self._targets.get(endpoint) if type(endpoint) is str else None
        if target is not None and target[0] is route and target[1] is version:
            target_text = target[2]
        else:
            route_text = self._name(route)
            version_text = self._name(version)
            endpoint_text = self._name(endpoint)
            if route_text is None or version_text is None or endpoint_text is None:
                return self._put_struct(entry, pos, skipped)
            target_text = b"".join(
                (_K_ROUTE, route_text, _K_VERSION, version_text, _K_ENDPOINT, endpoint_text, _K_LABELS)
            )
            if type(endpoint) is str:
                targets = self._targets
                if len(targets) >= _CACHE_MAX:
                    targets.clear()
                targets[endpoint] = (route, version, target_text)
        if labels is None:
            labels_text = _NULL
        elif type(labels) is dict:
            labels_text = _encode(labels) if labels else _NULL
        else:
            return self._put_struct(entry, pos, skipped)

        second = ms // 1000
        if second != self._fast_second:
            text = _strftime("%Y-%m-%dT%H:%M:%S", _gmtime(second))
            self._fast_second_text = b'{"time":"' + text.encode("ascii")
            self._fast_second = second
        second_text = self._fast_second_text

        need = _LINE_FIXED + len(second_text) + len(rid_text) + len(path_text) + len(method_text)
        need += len(client_text) + len(target_text) + len(flags_text) + len(labels_text)
        self._reserve(pos, need)
        buf = self._buffer  # compiled: its unsigned char*

        pos = _put(buf, pos, second_text)
        millis = ms % 1000
        buf[pos] = 46  # "."
        buf[pos + 1] = 48 + millis // 100
        buf[pos + 2] = 48 + millis // 10 % 10
        buf[pos + 3] = 48 + millis % 10
        pos = _put(buf, pos + 4, _K_REQUEST_ID_Q if rid_clean else _K_REQUEST_ID)
        pos = _put(buf, pos, rid_text)
        pos = _put(buf, pos, _K_CLIENT_Q if rid_clean else _K_CLIENT)
        pos = _put(buf, pos, client_text)
        pos = _put(buf, pos, _K_METHOD)
        pos = _put(buf, pos, method_text)
        pos = _put(buf, pos, _K_PATH_Q if path_clean else _K_PATH)
        pos = _put(buf, pos, path_text)
        pos = _put(buf, pos, _K_STATUS_Q if path_clean else _K_STATUS)
        pos = _put_uint(buf, pos, status)
        pos = _put(buf, pos, _K_BYTES_IN)
        pos = _put_uint(buf, pos, b_in)
        pos = _put(buf, pos, _K_BYTES_OUT)
        pos = _put_uint(buf, pos, b_out)
        pos = _put(buf, pos, _K_DURATION)
        pos = _put_millis(buf, pos, duration_us)
        if upstream_us < 0:
            pos = _put(buf, pos, _K_UPSTREAM_NULL)
        else:
            pos = _put(buf, pos, _K_UPSTREAM)
            pos = _put_millis(buf, pos, upstream_us)
        pos = _put(buf, pos, target_text)
        pos = _put(buf, pos, labels_text)
        if has_sticky:
            pos = _put(buf, pos, _K_STICKY)
            i = 15
            while i >= 0:
                digit = hash64 & 15
                buf[pos + i] = 48 + digit if digit < 10 else 87 + digit  # 0-9, a-f
                hash64 >>= 4
                i -= 1
            pos = _put(buf, pos + 16, _K_FLAGS_Q)
        else:
            pos = _put(buf, pos, _K_STICKY_NULL)
        pos = _put(buf, pos, flags_text)
        return _put(buf, pos, _END)

    def _name(self, value: object) -> bytes | None:
        """The JSON text of a str field (empty or None: null); None for any other value."""
        if type(value) is str:
            if len(value) == 0:
                return _NULL
            names = self._names
            text = names.get(value)
            if text is None:
                text = _encode(value)
                if len(names) >= _CACHE_MAX:
                    names.clear()
                names[value] = text
            return text
        if value is None:
            return _NULL
        return None

    def _put_struct(self, entry: object, pos: int, skipped: object) -> int:
        """Write the line of an entry the fast path does not take, made by msgspec (if it can be)."""
        line = self._format_structs([entry], skipped)
        self._reserve(pos, len(line))
        return _put(self._buffer, pos, line)

    def _reserve(self, pos: int, need: int) -> None:
        """Grow the buffer if needed to hold ``need`` more bytes after ``pos`` (it may move)."""
        size = len(self._buffer)
        if pos + need > size:
            grown = bytearray(max(2 * size, pos + need))
            grown[:pos] = self._buffer[:pos]
            self._buffer = grown
