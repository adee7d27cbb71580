"""proxy._fast.matching: the path-index walk and the request-part parsers routes use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._fast import compiled, pure

TWIN = pure("matching")
FAST = compiled("matching")
FORMS = [pytest.param(TWIN, id="pure")] + ([pytest.param(FAST, id="compiled")] if FAST is not None else [])

NODES = {b"/api": "api", b"/api/v1": "v1", b"/api/v1/users": "users", b"/a": "a", b"/a/": "a/"}


@pytest.mark.parametrize("m", FORMS)
@pytest.mark.parametrize(
    ("path", "found"),
    [
        (b"/api", "api"),
        (b"/api/", "api"),
        (b"/api/x", "api"),
        (b"/api/v1", "v1"),
        (b"/api/v1/users/7", "users"),
        (b"/api/v1/usersx", "v1"),
        (b"/apix", "root"),  # segment-wise: "/api" does not match "/apix"
        (b"/", "root"),
        (b"", "root"),
        (b"*", "root"),
        (b"//api", "root"),
        (b"/a//b", "a/"),
    ],
)
def test_lookup_prefix_finds_the_deepest_segment_prefix(m, path, found):
    assert m.lookup_prefix(NODES, path, "root") == found


@pytest.mark.parametrize("m", FORMS)
def test_has_path_prefix_is_segment_wise(m):
    assert m.has_path_prefix(b"/api", b"/api")
    assert m.has_path_prefix(b"/api/", b"/api")
    assert m.has_path_prefix(b"/api/x/y", b"/api")
    assert not m.has_path_prefix(b"/apix", b"/api")
    assert not m.has_path_prefix(b"/ap", b"/api")
    assert m.has_path_prefix(b"/anything", b"/")
    assert m.has_path_prefix(b"", b"/")


@pytest.mark.parametrize("m", FORMS)
@pytest.mark.parametrize(
    ("raw", "host"),
    [
        (b"Example.COM", b"example.com"),
        (b"example.com:8080", b"example.com"),
        (b"example.com.", b"example.com"),
        (b"example.com.:80", b"example.com"),
        (b"[::1]:8080", b"[::1]"),
        (b"[FE80::1]", b"[fe80::1]"),
        (b"10.0.0.1:80", b"10.0.0.1"),
        (b"", b""),
        (None, b""),
    ],
)
def test_normalize_host(m, raw, host):
    assert m.normalize_host(raw) == host


@pytest.mark.parametrize("m", FORMS)
def test_first_value_is_the_first_value_of_the_name(m):
    headers = [(b"host", b"a"), (b"x-user-id", b"u1"), (b"x-user-id", b"u2"), (b"empty", b"")]
    assert m.first_value(headers, b"x-user-id") == b"u1"
    assert m.first_value(headers, b"empty") == b""
    assert m.first_value(headers, b"X-User-ID") is None  # names are compared as given (lower-case)
    assert m.first_value(headers, b"absent") is None
    assert m.first_value([], b"host") is None


@pytest.mark.parametrize("m", FORMS)
def test_parse_cookies(m):
    header = b'session=abc; uid = "u 1" ; flag; =x; uid=second; empty='
    assert m.parse_cookies(header) == {b"session": b"abc", b"uid": b"u 1", b"empty": b""}
    assert m.parse_cookies(b"") == {}
    assert m.parse_cookies(b'q="') == {b"q": b'"'}


@pytest.mark.parametrize("m", FORMS)
def test_parse_query(m):
    query = b"a=1&b=x+y&c=%41%zz&a=2&flag&&n%61me=v%26&e="
    assert m.parse_query(query) == {
        b"a": b"1",
        b"b": b"x y",
        b"c": b"A%zz",  # an invalid escape stays as it is
        b"flag": b"",
        b"name": b"v&",
        b"e": b"",
    }
    assert m.parse_query(b"") == {}


# --- the twins agree -------------------------------------------------------------

segment = st.sampled_from([b"api", b"v1", b"a", b"", b"users", b"x"])
paths = st.lists(segment, max_size=5).map(lambda parts: b"/" + b"/".join(parts))
any_bytes = st.binary(max_size=60)
header_bytes = st.lists(
    st.sampled_from([b"a", b"=", b";", b" ", b'"', b"b", b"\t", b"%", b"+", b"&", b"2"]), max_size=40
).map(b"".join)
twins = pytest.mark.skipif(FAST is None, reason="proxy._fast._matching_c is not built")


@pytest.mark.twins
@twins
@given(keys=st.lists(paths, max_size=8), path=st.one_of(paths, any_bytes))
def test_twins_agree_on_lookup_prefix(keys, path):
    nodes = {key: key for key in keys if key not in (b"/", b"")}
    assert FAST.lookup_prefix(nodes, path, None) == TWIN.lookup_prefix(nodes, path, None)
    for prefix in keys:
        assert FAST.has_path_prefix(path, prefix) == TWIN.has_path_prefix(path, prefix)


@pytest.mark.twins
@twins
@given(raw=st.one_of(st.none(), any_bytes, st.sampled_from([b"[::1]:80", b"A.b.:1", b"[x", b":", b"."])))
def test_twins_agree_on_normalize_host(raw):
    assert FAST.normalize_host(raw) == TWIN.normalize_host(raw)


@pytest.mark.twins
@twins
@given(data=st.one_of(any_bytes, header_bytes))
def test_twins_agree_on_parsers(data):
    assert FAST.parse_cookies(data) == TWIN.parse_cookies(data)
    assert FAST.parse_query(data) == TWIN.parse_query(data)


@pytest.mark.twins
@twins
@given(
    headers=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"host", b""]), any_bytes), max_size=6),
    name=st.sampled_from([b"a", b"b", b"host", b"", b"c"]),
)
def test_twins_agree_on_first_value(headers, name):
    assert FAST.first_value(headers, name) == TWIN.first_value(headers, name)


# --- the walk against the definition ----------------------------------------------


@given(prefixes=st.lists(paths, max_size=6), path=paths)
def test_lookup_prefix_equals_longest_matching_prefix(prefixes, path):
    """With a node per segment-boundary key of each prefix, valued with the longest configured
    prefix at or above it (as the route index does), the walk gives the longest configured
    prefix of ``path``, segment-wise."""
    configured = {prefix.rstrip(b"/") or b"/" for prefix in prefixes} - {b"/"}
    keys = set(configured)
    for prefix in configured:
        keys.update(prefix[:i] for i in range(1, len(prefix)) if prefix[i] == 47)

    def longest_configured(path: bytes) -> bytes:
        found = [k for k in configured if TWIN.has_path_prefix(path, k)]
        return max(found, key=len) if found else b"/"

    nodes = {key: longest_configured(key) for key in keys}
    assert TWIN.lookup_prefix(nodes, path, b"/") == longest_configured(path)
