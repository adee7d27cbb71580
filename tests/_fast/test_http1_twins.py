"""The compiled proxy._fast.http1 and its pure-Python twin behave identically.

Hypothesis feeds both forms the same input: heads drawn from a grammar of valid and
nearly valid requests and responses (then sometimes mutated by a byte), random bytes,
and chunked streams (sometimes corrupted) cut at random points. Both must return equal
results, slot by slot, or raise the same exception class with the same message.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._fast import compiled, pure
from proxy.errors import BadRequest, UpstreamProtocolError
from proxy.http.request import RequestHead

TWIN = pure("http1")
FAST = compiled("http1")

pytestmark = [
    pytest.mark.twins,
    pytest.mark.skipif(FAST is None, reason="proxy._fast._http1_c is not built"),
]

REQUEST_SLOTS = RequestHead.__slots__
# headers, status_line, forward_headers: properties built from head and pieces
RESPONSE_SLOTS = (*TWIN.ResponseHead.__slots__, "headers", "status_line", "forward_headers")


def outcome(call, slots):
    """What a call gives: ("ok", every slot) or ("raised", class, message)."""
    try:
        result = call()
    except Exception as exc:  # any exception counts: both forms must raise the same one
        return ("raised", type(exc), str(exc))
    return ("ok", type(result).__name__, tuple((slot, getattr(result, slot, "<unset>")) for slot in slots))


# --- a grammar of heads, valid and nearly valid ------------------------------------------
#
# Each part of a head is valid most of the time and wrong now and then, so that most heads
# get deep into the parser and each kind of mistake still shows up on its own.

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PATH_CHARS = "abc/?=&%-._~!$'()*+,;:@[]{}|^`\"<>"
VALUE_CHARS = 'abc XYZ 0189,;=\t/"\x80\xff'
NASTY = b' \t\r\n\x00\x01\x7f\x80\xff:;,"#@/?\\'


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 20) -> st.SearchStrategy:
    """``good``, except about one draw in ``odds``, which comes from ``bad``."""
    # sampled_from, not integers: hypothesis favours the bounds of an integer range.
    return st.sampled_from([good] * (odds - 1) + [bad]).flatmap(lambda chosen: chosen)


def tokens(max_size: int = 8) -> st.SearchStrategy:
    return st.text(TOKEN_CHARS, min_size=1, max_size=max_size).map(str.encode)


methods = mostly(
    st.one_of(
        st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"CONNECT"]), tokens()
    ),
    st.sampled_from([b"", b"GE T", b"G(T", b"GET\t", b"G\x80T"]),
)
targets = mostly(
    st.one_of(
        st.text(PATH_CHARS, max_size=12).map(lambda t: b"/" + t.encode()),
        st.sampled_from(
            [b"/", b"/a/b?c=d&e=f", b"/x?", b"*", b"http://api.example/v1?q=1", b"https://api.example:8443"]
            + [b"http://api.example?x", b"HTTP://[::1]:80/p"]
        ),
    ),
    st.one_of(
        st.sampled_from([b"http:///x", b"http://u@h/", b"http//x", b"host:443", b"/a#b", b"/caf\xc3\xa9"]),
        st.binary(max_size=12).map(lambda b: b"/" + b),
        st.integers(1000, 1100).map(lambda n: b"/" + b"a" * n),
    ),
)  # fmt: skip
request_versions = mostly(
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]),
    st.sampled_from([b"HTTP/1.2", b"HTTP/2.0", b"HTTP/x", b"http/1.1", b""]),
)
response_versions = mostly(
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]),
    st.sampled_from([b"HTTP/2.0", b"HTTP/1.x", b"HTTX/1.1", b""]),
)
status_codes = mostly(
    st.integers(100, 599).map(lambda n: b"%d" % n),
    st.one_of(st.integers(0, 999).map(lambda n: b"%d" % n), st.sampled_from([b"2x0", b"", b"0200", b" 200"])),
)
reasons = mostly(
    st.sampled_from([b" OK", b"", b" ", b" Not Found"]), st.sampled_from([b" a\x01b", b"OK", b"\t"])
)

# Per header name: (usual values, odd values).
VALUES = {
    b"Host": ([b"a.example", b"a.example:8080", b"[::1]", b""], [b"a b", b"a/b", b"u@a"]),
    b"Content-Length": (
        [b"0", b"5", b"5, 5", b"007"],
        [b"5, 6", b"-1", b"1e3", b"0x10", b"+5", b"", b"9" * 20],
    ),
    b"Transfer-Encoding": (
        [b"chunked", b"Chunked"],
        [b"gzip", b"chunked, gzip", b"gzip, chunked", b"identity", b""],
    ),
    b"Connection": (
        [b"close", b"keep-alive", b"Upgrade", b"keep-alive, X-A", b"x-a"],
        [b"host", b"content-length"],
    ),
    b"Upgrade": ([b"websocket", b"h2c"], [b""]),
    b"Expect": ([b"100-continue", b"100-Continue"], [b"nothing"]),
    b"X-Forwarded-For": ([b"10.0.0.1", b"10.0.0.1, 10.0.0.2"], [b""]),
    b"X-Request-ID": ([b"r-1", b"r-2"], [b""]),
    b"X-A": ([b"1", b"x y"], [b"\x01"]),
    b"Keep-Alive": ([b"timeout=5"], [b""]),
    b"TE": ([b"trailers"], [b""]),
}
NAMES = [*VALUES, b"x-forwarded-proto", b"proxy-connection", b"trailer", b"HOST", b"content-length"]


@st.composite
def header_lines(draw):
    name = draw(st.one_of(st.sampled_from(NAMES), tokens(6)))
    usual, odd = VALUES.get(name, ([b"v", b"some value"], [b"\x7f"]))
    random_value = st.text(VALUE_CHARS, max_size=6).map(lambda t: t.encode("latin-1"))
    value = draw(mostly(st.one_of(st.sampled_from(usual), random_value), st.sampled_from(odd), odds=25))
    sep = draw(mostly(st.sampled_from([b": ", b":"]), st.sampled_from([b":  ", b" : ", b"\t:"]), odds=40))
    line = name + sep + value + draw(mostly(st.just(b""), st.sampled_from([b" ", b"\t"]), odds=4))
    if draw(mostly(st.just(False), st.just(True), odds=60)):
        line = b" " + line  # obs-fold
    return line


@st.composite
def mutated(draw, raw):
    """Now and then change, insert or delete one byte (biased towards bytes that matter)."""
    kind = draw(st.integers(0, 11))
    if kind >= 3 or not raw:
        return raw
    pos = draw(st.integers(0, len(raw) - 1))
    byte = bytes([draw(st.sampled_from(NASTY))])
    if kind == 0:
        return raw[:pos] + byte + raw[pos + 1 :]
    if kind == 1:
        return raw[:pos] + byte + raw[pos:]
    return raw[:pos] + raw[pos + 1 :]


@st.composite
def request_heads(draw):
    start = draw(methods) + b" " + draw(targets) + b" " + draw(request_versions)
    lines = [start, *draw(st.lists(header_lines(), max_size=8))]
    if draw(mostly(st.just(True), st.just(False), odds=8)):
        lines.insert(1, b"Host: a.example")
    eol = draw(mostly(st.just(b"\r\n"), st.sampled_from([b"\n", b"\r"]), odds=30))
    raw = eol.join(lines) + b"\r\n\r\n"
    return draw(mutated(raw))


@st.composite
def response_heads(draw):
    start = draw(response_versions) + b" " + draw(status_codes) + draw(reasons)
    lines = [start, *draw(st.lists(header_lines(), max_size=8))]
    raw = b"\r\n".join(lines) + b"\r\n\r\n"
    return draw(mutated(raw))


random_heads = st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: b + b"\r\n\r\n"))
# Mostly heads of the right kind; sometimes the other kind, sometimes noise.
requests = st.one_of(request_heads(), request_heads(), request_heads(), response_heads(), random_heads)
responses = st.one_of(response_heads(), response_heads(), response_heads(), request_heads(), random_heads)
max_uris = st.sampled_from([8, 1024, 1024, 8192])
max_headers = st.sampled_from([0, 3, 100, 100])


@given(raw=requests, max_uri=max_uris, max_count=max_headers)
def test_request_heads_parse_alike(raw, max_uri, max_count):
    expected = outcome(lambda: TWIN.parse_request_head(raw, max_uri, max_count), REQUEST_SLOTS)
    got = outcome(lambda: FAST.parse_request_head(raw, max_uri, max_count), REQUEST_SLOTS)
    assert got == expected


@given(raw=responses, max_count=max_headers)
def test_response_heads_parse_alike(raw, max_count):
    expected = outcome(lambda: TWIN.parse_response_head(raw, max_count), RESPONSE_SLOTS)
    got = outcome(lambda: FAST.parse_response_head(raw, max_count), RESPONSE_SLOTS)
    assert got == expected


# --- chunked streams ---------------------------------------------------------------------------

GOOD_EXTENSIONS = [b"", b"", b";a", b";a=b", b';n="q;\\"x"', b";\t"]
BAD_EXTENSIONS = [b" ;a", b";\x01", b";a\x7f"]
GOOD_TRAILERS = [b"X-Sum: 1", b"X-B:", b"x-c:\tv "]
BAD_TRAILERS = [b"bad", b" fold: x", b"X: a\x00", b": v"]


@st.composite
def chunked_streams(draw):
    """(stream, its body, or None when the stream is not valid)."""
    valid = True

    def pick(good, bad):
        nonlocal valid
        if draw(st.integers(0, 9)) == 0:
            valid = False
            return draw(st.sampled_from(bad))
        return draw(st.sampled_from(good))

    datas = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=5))
    parts = []
    for data in datas:
        size = draw(st.sampled_from([b"%x" % len(data), b"%X" % len(data), b"%04x" % len(data)]))
        parts.append(size + pick(GOOD_EXTENSIONS, BAD_EXTENSIONS) + b"\r\n" + data + b"\r\n")
    parts.append(b"0" + pick(GOOD_EXTENSIONS, BAD_EXTENSIONS) + b"\r\n")
    for _ in range(draw(st.integers(0, 3))):
        parts.append(pick(GOOD_TRAILERS, BAD_TRAILERS) + b"\r\n")
    parts.append(b"\r\n")
    stream = b"".join(parts)
    changed = draw(mutated(stream))
    return changed, b"".join(datas) if valid and changed == stream else None


@st.composite
def cut_points(draw, length):
    return sorted(draw(st.lists(st.integers(0, length), max_size=6)))


def feed_all(module, stream, cuts, error):
    """Every feed's outcome, then the decoder's final state."""
    decoder = module.ChunkedDecoder(error)
    results = []
    bounds = [0, *cuts, len(stream)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        try:
            pieces, used = decoder.feed(stream[start:stop])
        except Exception as exc:
            results.append(("raised", type(exc), str(exc)))
            break
        results.append(("ok", pieces, used, decoder.done))
    state = (decoder.state, decoder.remaining, decoder.line, decoder.trailer_bytes, decoder.done)
    return results, state


@given(data=st.data(), pipelined=st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n", b"\r\n"]))
def test_chunked_streams_decode_alike(data, pipelined):
    stream, body = data.draw(chunked_streams())
    stream += pipelined
    cuts = data.draw(cut_points(len(stream)))
    error = data.draw(st.sampled_from([BadRequest, UpstreamProtocolError]))
    expected = feed_all(TWIN, stream, cuts, error)
    assert feed_all(FAST, stream, cuts, error) == expected
    if body is not None:
        # A stream left intact decodes to its data and leaves what follows it.
        results = expected[0]
        assert all(r[0] == "ok" for r in results)
        assert b"".join(p for r in results for p in r[1]) == body
        assert sum(r[2] for r in results) == len(stream) - len(pipelined)
        assert results[-1][3] is True


@given(raw=st.binary(max_size=60), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_random_bytes_as_chunked_decode_alike(raw, cuts):
    cuts = sorted(min(c, len(raw)) for c in cuts)
    assert feed_all(FAST, raw, cuts, BadRequest) == feed_all(TWIN, raw, cuts, BadRequest)


@given(
    block=st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"")), names=st.sets(st.binary(max_size=4))
)
def test_drop_header_lines_alike(block, names):
    block = b"\r\n".join(block.split(b"\n")) + b"\r\n"
    names = frozenset(names)
    assert FAST.drop_header_lines(block, names) == TWIN.drop_header_lines(block, names)


@given(data=st.binary(min_size=1, max_size=300))
def test_chunk_alike(data):
    assert FAST.chunk(data) == TWIN.chunk(data)


@given(
    buf=st.lists(
        st.sampled_from([b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"a", b"GET / HTTP/1.1"]), max_size=24
    ).map(b"".join)
)
def test_find_head_end_alike(buf):
    # The compiled form scans with skips, the twin calls bytes.find: both must give find's answer.
    assert FAST.find_head_end(buf) == TWIN.find_head_end(buf) == buf.find(b"\r\n\r\n")
