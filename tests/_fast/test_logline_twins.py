"""The access-log line formatter: both forms give the bytes the former formatter gave.

proxy._fast.logline has two ways to the same bytes: the pure-Python twin builds a msgspec Struct
per line (as proxy.observe.accesslog did before), the compiled one writes each line into a buffer
and keeps msgspec for odd values only. Hypothesis feeds them the same random batches, with nasty
bytes and strings, None fields, negative and huge numbers, NaN, odd labels and values of the
wrong type. Checked: both forms against each other, each against a copy of the former formatter
(byte for byte, the same entries skipped), and every line against the JSON object it must be.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._fast import compiled, pure
from tests.observe.entries import entry

TWIN = pure("logline")
FAST = compiled("logline")
FORMS = [pytest.param(TWIN, id="pure")]
if FAST is not None:
    FORMS.append(pytest.param(FAST, id="compiled"))

twins = pytest.mark.skipif(FAST is None, reason="proxy._fast._logline_c is not built")

KEYS = [
    "time", "request_id", "client", "method", "path", "status", "bytes_in", "bytes_out",
    "duration_ms", "upstream_ms", "route", "version", "endpoint", "labels", "sticky_hash", "flags",
]  # fmt: skip


# --- the former formatter (proxy/observe/accesslog.py before the twin), kept as the reference ---

_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class _Line(msgspec.Struct, gc=False):
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


def reference(entries: list) -> tuple[bytes, list[int]]:
    """What the former AccessLog.format wrote for ``entries``, and the indexes it skipped.

    One difference, on purpose: an OSError (time.gmtime of a time past the year 10**9) cost the
    former formatter the whole batch; here, as in the twin, it costs the entry.
    """
    lines = []
    kept = []
    skipped = []
    for index, item in enumerate(entries):
        try:
            (t, rid, client, method, path, status, b_in, b_out, dur, up, route, version, endpoint, labels,
             sticky, flags) = item  # fmt: skip
            ms = int(t * 1000.0)
            second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
            line = _Line(
                second_text + _MILLIS[ms % 1000],
                None if rid is None else rid.decode("ascii", "backslashreplace"),
                client or None,
                None if method is None else method.decode("ascii", "backslashreplace"),
                None if path is None else path.decode("ascii", "backslashreplace"),
                status,
                b_in,
                b_out,
                int(dur * 1e6) / 1000.0,
                None if up < 0 else int(up * 1e6) / 1000.0,
                route or None,
                version or None,
                endpoint or None,
                labels or None,
                None if sticky < 0 else sticky.to_bytes(8).hex(),
                flags or "-",
            )
        except (TypeError, ValueError, AttributeError, OverflowError, OSError):
            skipped.append(index)
            continue
        lines.append(line)
        kept.append(index)
    out = []
    for line, index in zip(lines, kept, strict=True):
        try:
            out.append(msgspec.json.encode(line) + b"\n")
        except (TypeError, ValueError, OverflowError):
            skipped.append(index)
    return b"".join(out), sorted(skipped)


def run(module: Any, entries: list, formatter: Any = None) -> tuple[bytes, list[int]]:
    """``module``'s bytes for ``entries`` and the indexes it skipped."""
    formatter = formatter or module.LineFormatter()
    skipped = []
    positions = {id(entry): index for index, entry in enumerate(entries)}  # entries are distinct tuples
    data = formatter.format(entries, lambda entry, error: skipped.append(positions[id(entry)]))
    return data, sorted(skipped)


def expected(entry: tuple) -> dict:
    """The JSON object a well-typed entry's line must parse to."""
    (t, rid, client, method, path, status, b_in, b_out, dur, up, route, version, endpoint, labels,
     sticky, flags) = entry  # fmt: skip
    ms = int(t * 1000.0)
    when = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "time": f"{when}.{ms % 1000:03d}Z",
        "request_id": None if rid is None else rid.decode("ascii", "backslashreplace"),
        "client": client or None,
        "method": None if method is None else method.decode("ascii", "backslashreplace"),
        "path": None if path is None else path.decode("ascii", "backslashreplace"),
        "status": status,
        "bytes_in": b_in,
        "bytes_out": b_out,
        "duration_ms": int(dur * 1e6) / 1000,
        "upstream_ms": None if up < 0 else int(up * 1e6) / 1000,
        "route": route or None,
        "version": version or None,
        "endpoint": endpoint or None,
        "labels": labels or None,
        "sticky_hash": None if sticky < 0 else f"{sticky:016x}",
        "flags": flags or "-",
    }


# --- entries ---------------------------------------------------------------------------------------


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 30) -> st.SearchStrategy:
    """``good``, except about one draw in ``odds``, which comes from ``bad``."""
    # With 16 fields, about half the entries have no odd value at all: the compiled form's own
    # path formats those; an entry with one odd value goes the msgspec way.
    return st.sampled_from([good] * (odds - 1) + [bad]).flatmap(lambda chosen: chosen)


def either(clean: st.SearchStrategy, nasty: st.SearchStrategy) -> st.SearchStrategy:
    """As often ``clean`` as ``nasty``."""
    return st.sampled_from([clean, nasty]).flatmap(lambda chosen: chosen)


CLEAN = "".join(chr(c) for c in range(32, 127) if c not in (34, 92))
NASTY_BYTES = b'"\\\x00\x01\n\r\t\x1f\x7f\x80\xc3\xa9\xff/ a~'
NASTY_TEXT = '"\\\x00\n\t\x1f\x7f\x80\u00e9\u20ac\u2028\U0001f600 a~'
# A few shared objects, so that the caches see the same names again (and equal names that are
# other objects: the endpoint cache keys on identity of route and version).
NAMES = ["shop", "v1", "v2", "10.0.2.1:8080", "10.0.2.2:8080", "".join(["sh", "op"]), "".join(["v", "1"])]
WRONG = st.sampled_from([object(), 1.5, [1], ("a",), b"x", True])

times = mostly(
    st.one_of(st.floats(0, 4e9), st.sampled_from([0.0, 0.999, 1.0, 86_399.5, 951_782_400.007, 1e11 - 1])),
    st.one_of(
        st.sampled_from([1e11, 1e12, -1.5, -0.0, float("nan"), float("inf"), -float("inf"), 1e18, 2.0**63]),
        st.integers(-(10**6), 10**10),
        st.sampled_from([True, None, "1", b"1"]),
    ),
)
byte_values = either(
    st.one_of(st.text(CLEAN, max_size=40).map(str.encode), st.sampled_from([b"GET", b"POST", b"/", b""])),
    st.one_of(
        st.none(),
        st.binary(max_size=30),
        st.text(NASTY_BYTES.decode("latin-1"), min_size=1, max_size=12).map(lambda s: s.encode("latin-1")),
    ),
)
byte_fields = mostly(byte_values, st.sampled_from([bytearray(b"/ba"), "str", 5, memoryview(b"mv")]))
str_fields = mostly(
    either(
        st.one_of(st.sampled_from(NAMES), st.text(CLEAN, max_size=20)),
        st.one_of(st.sampled_from(["", None, "-"]), st.text(NASTY_TEXT, max_size=10), st.text(max_size=10)),
    ),
    st.one_of(st.just("\ud800"), WRONG, st.sampled_from([0, 7])),
)
ints = mostly(
    st.one_of(st.integers(0, 999), st.integers(0, 2**40), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1])),
    st.one_of(
        st.sampled_from([2**64, 10**30, -1, -(2**63), -(2**70), True, False]),
        st.integers(),
        st.sampled_from([1.5, float("nan"), None, "200", b"1"]),
    ),
)
seconds = mostly(
    st.one_of(
        st.floats(0, 100),
        st.floats(0, 1e9, exclude_max=True),
        st.sampled_from([-1.0, -0.0, -1e-9, -5.0, 0.0, 1e-7, 0.0015, 1e9 - 1e-6]),
    ),
    st.one_of(
        st.sampled_from([1e9, 1e12, 1e300, float("nan"), float("inf"), -float("inf")]),
        st.floats(-1e6, 1e16),
        st.integers(-5, 10**9),
        st.sampled_from([True, None, "0.1"]),
    ),
)
label_values = st.one_of(st.text(max_size=8), st.text(NASTY_TEXT, max_size=5))
labels = mostly(
    either(
        st.one_of(
            st.none(), st.dictionaries(st.text(CLEAN, max_size=6), st.text(CLEAN, max_size=8), max_size=3)
        ),
        st.one_of(st.just({}), st.dictionaries(label_values, label_values, max_size=3)),
    ),
    st.sampled_from(
        [{"x": object()}, {"n": 1, "f": 1.5, "l": [1, "a"]}, {1: "int key"}, {"s": "\ud800"}, ["a"], 0]
    ),
)
stickies = mostly(
    st.one_of(st.just(-1), st.integers(0, 2**64 - 1), st.sampled_from([0, 2**64 - 1, -2, -(2**70)])),
    st.sampled_from([2**64, 2**70, True, False, None, 1.5, "ab"]),
)
flag_values = mostly(
    st.one_of(st.sampled_from(["-", "UF", "UT", "NR", "DC", "", None]), st.text(NASTY_TEXT, max_size=4)),
    st.sampled_from([0, "\ud800", b"UF"]),
)
entries = st.tuples(
    times,
    byte_fields,
    str_fields,
    byte_fields,
    byte_fields,
    ints,
    ints,
    ints,
    seconds,
    seconds,
    str_fields,
    str_fields,
    str_fields,
    labels,
    stickies,
    flag_values,
)
batches = st.lists(entries, max_size=24)


# --- the checks ------------------------------------------------------------------------------------


@twins
@pytest.mark.twins
@given(batch=batches)
def test_both_forms_give_the_same_bytes(batch):
    assert run(FAST, batch) == run(TWIN, batch)


@pytest.mark.parametrize("module", FORMS)
@given(batch=batches)
def test_same_bytes_as_the_former_formatter(module, batch):
    assert run(module, batch) == reference(batch)


@pytest.mark.parametrize("module", FORMS)
@given(batches=st.lists(batches, min_size=2, max_size=4))
def test_a_formatter_keeps_no_state_that_changes_a_line(module, batches):
    """Caches and the reused buffer: batch after batch, each is formatted as it would be alone."""
    formatter = module.LineFormatter()
    for batch in batches:
        assert run(module, batch, formatter) == reference(batch)


well_typed = st.tuples(
    st.floats(0, 4e9),
    byte_values,
    st.one_of(st.sampled_from(["", None]), st.text(max_size=12)),
    st.one_of(st.none(), st.sampled_from([b"GET", b"P\xc3\xb6ST"]), byte_values),
    byte_values,
    st.integers(0, 999),
    st.integers(0, 2**63 - 1),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(0, 1e6),
    st.one_of(st.just(-1.0), st.floats(-10, 1e6)),
    st.one_of(st.sampled_from(["", None, "shop"]), st.text(NASTY_TEXT, max_size=8)),
    st.one_of(st.sampled_from(["", None, "v1"]), st.text(max_size=8)),
    st.one_of(st.sampled_from(["", None, "10.0.2.1:8080"]), st.text(max_size=8)),
    st.one_of(st.none(), st.dictionaries(st.text(max_size=6), st.text(NASTY_TEXT, max_size=8), max_size=3)),
    st.one_of(st.just(-1), st.integers(-(2**64), 2**64 - 1)),
    st.one_of(st.sampled_from(["-", "", "UF"]), st.text(NASTY_TEXT, max_size=3)),
)


@pytest.mark.parametrize("module", FORMS)
@given(batch=st.lists(well_typed, max_size=12))
def test_each_line_is_the_json_object_of_its_entry(module, batch):
    data, skipped = run(module, batch)
    assert skipped == []
    assert data.count(b"\n") == len(batch)
    assert data == b"" or data.endswith(b"\n")
    for line, item in zip(data.splitlines(), batch, strict=True):
        parsed = json.loads(line)
        assert parsed == expected(item)
        assert list(parsed) == KEYS


@pytest.mark.parametrize("module", FORMS)
def test_a_line_byte_for_byte(module):
    data, skipped = run(
        module, [entry(), entry(upstream_duration=-1.0, sticky_hash=-1, labels=None, route="")]
    )
    assert skipped == []
    assert data == (
        b'{"time":"2026-01-01T00:00:00.250Z","request_id":"5f3a9c01000000a1","client":"10.1.2.3",'
        b'"method":"GET","path":"/api/items","status":200,"bytes_in":0,"bytes_out":1234,"duration_ms":2.345,'
        b'"upstream_ms":2.1,"route":"shop","version":"v2","endpoint":"10.0.2.1:8080","labels":{"tier":"gold"},'
        b'"sticky_hash":"00abcdef01234567","flags":"-"}\n'
        b'{"time":"2026-01-01T00:00:00.250Z","request_id":"5f3a9c01000000a1","client":"10.1.2.3",'
        b'"method":"GET","path":"/api/items","status":200,"bytes_in":0,"bytes_out":1234,"duration_ms":2.345,'
        b'"upstream_ms":null,"route":null,"version":"v2","endpoint":"10.0.2.1:8080","labels":null,'
        b'"sticky_hash":null,"flags":"-"}\n'
    )


@pytest.mark.parametrize("module", FORMS)
def test_milliseconds_are_the_shortest_repr(module):
    """duration_ms is int(s * 1e6) / 1000.0 as msgspec writes it: the compiled form writes the decimal."""
    micros = list(range(0, 3000)) + [10**k + d for k in range(3, 15) for d in (-1, 0, 1, 10, 100, 120, 999)]
    micros += [123_456_789_012_345, 999_999_999_999_999, 2**49, 2**50 + 7]
    batch = [entry(duration=us / 1e6, upstream_duration=us / 1e6) for us in micros]
    data, skipped = run(module, batch)
    assert skipped == []
    assert data == reference(batch)[0]
    for line, e in zip(data.splitlines(), batch, strict=True):
        text = line.split(b'"duration_ms":')[1].split(b",")[0].decode()
        assert text == repr(int(e[8] * 1e6) / 1000.0)
        assert math.isfinite(float(text))


@pytest.mark.parametrize("module", FORMS)
def test_caches_that_fill_up_start_again(module):
    formatter = module.LineFormatter()
    batch = [
        entry(
            client=f"10.0.{i // 256}.{i % 256}", method=b"M%d" % i, endpoint=f"10.1.0.{i}:80", flags=f"F{i}"
        )
        for i in range(3000)
    ]
    for _ in range(2):
        assert run(module, batch, formatter) == reference(batch)


@pytest.mark.parametrize("module", FORMS)
def test_an_endpoint_shared_by_routes(module):
    """The endpoint cache holds the route and version objects it was made for; others are not mixed up."""
    formatter = module.LineFormatter()
    batch = []
    for i in range(50):
        route = "".join(["ap", "i"]) if i % 3 else "web"
        batch.append(entry(route=route, version="v1" if i % 2 else "".join(["v", "2"]), path=b"/%d" % i))
    assert run(module, batch, formatter) == reference(batch)
    lines = [json.loads(line) for line in run(module, batch, formatter)[0].splitlines()]
    assert [(line["route"], line["version"]) for line in lines] == [
        ("api" if i % 3 else "web", "v1" if i % 2 else "v2") for i in range(50)
    ]


@pytest.mark.parametrize("module", FORMS)
def test_long_lines_and_big_batches_grow_the_buffer(module):
    formatter = module.LineFormatter()
    long_path = b"/" + b"x" * 300_000
    dirty_path = b'/\xff"' * 100_000
    batch = [entry(path=long_path), entry(path=dirty_path), entry(labels={"k": "v" * 70_000})]
    batch += [entry(path=b"/%d" % i) for i in range(5000)]  # ~2 MB: more than the buffer keeps
    assert run(module, batch, formatter) == reference(batch)
    small = [entry(), entry(request_id=b"\x00")]
    assert run(module, small, formatter) == reference(small)


@pytest.mark.parametrize("module", FORMS)
def test_bad_entries_are_skipped_alone(module):
    batch = [
        entry(path=b"/a"),
        entry(upstream_duration=None),  # TypeError
        entry(labels={"x": object()}),  # not JSON-encodable: TypeError
        entry(sticky_hash=2**64),  # OverflowError
        entry(duration=float("nan")),  # ValueError
        entry(request_id="a str"),  # AttributeError
        entry(time_unix=1e18),  # OSError from time.gmtime
        entry(time_unix=1e18),  # the same again: no cached text of another second
        entry(client="\ud800"),  # UnicodeEncodeError
        entry()[:15],  # ValueError: too few fields
        entry(path=b"/b"),
    ]
    data, skipped = run(module, batch)
    assert skipped == list(range(1, 10))
    assert [json.loads(line)["path"] for line in data.splitlines()] == ["/a", "/b"]
