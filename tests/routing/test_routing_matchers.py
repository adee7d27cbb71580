"""Each kind of match condition, alone and together (a route matches when all hold)."""

from __future__ import annotations

import pytest

from proxy.errors import NoRoute
from proxy.routing import RouteTable
from proxy.routing import view as view_module


def route_for(table: RouteTable, req, client_ip: str = "10.9.9.9") -> str | None:
    """The name of the route that takes ``req``, or None (404)."""
    try:
        return table.decide(req, client_ip).route_name
    except NoRoute:
        return None


def table_with(make_config, match: dict, **extra) -> RouteTable:
    """A table with route "hit" (``match``) and nothing else: a miss is a 404."""
    return RouteTable(make_config([{"name": "hit", "service": "shop", "match": match}], **extra))


# --- host ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "hit"),
    [
        (b"shop.example.com", True),
        (b"SHOP.Example.COM", True),  # case-insensitive
        (b"shop.example.com:8443", True),  # port ignored
        (b"shop.example.com.", True),  # trailing dot ignored
        (b"a.api.test", True),  # "*.api.test"
        (b"a.b.api.test", True),  # any depth
        (b"api.test", False),  # the wildcard needs a label before the suffix
        (b"xapi.test", False),
        (b"other.example.com", False),
        (None, False),  # no Host at all
    ],
)
def test_host(make_config, make_request, host, hit):
    table = table_with(make_config, {"host": ["shop.example.com", "*.api.test"]})
    assert (route_for(table, make_request(b"/", host=host)) == "hit") is hit


def test_host_star_matches_any_host(make_config, make_request):
    table = table_with(make_config, {"host": ["*"]})
    assert route_for(table, make_request(b"/", host=b"whatever.test")) == "hit"
    assert route_for(table, make_request(b"/", host=None)) == "hit"


def test_host_ipv6_literal(make_config, make_request):
    table = table_with(make_config, {"host": ["[::1]"]})
    assert route_for(table, make_request(b"/", host=b"[::1]:8080")) == "hit"
    assert route_for(table, make_request(b"/", host=b"[::2]")) is None


# --- path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "hit"),
    [(b"/login", True), (b"/login/", False), (b"/login/x", False), (b"/Login", False), (b"/log", False)],
)
def test_path_exact(make_config, make_request, path, hit):
    table = table_with(make_config, {"path": {"exact": "/login"}})
    assert (route_for(table, make_request(path)) == "hit") is hit


@pytest.mark.parametrize("prefix", ["/api", "/api/"])
@pytest.mark.parametrize(
    ("path", "hit"),
    [
        (b"/api", True),
        (b"/api/", True),
        (b"/api/x/y", True),
        (b"/apix", False),  # segment-wise, unlike Envoy's plain string prefix
        (b"/ap", False),
        (b"/v1/api", False),
    ],
)
def test_path_prefix_is_segment_wise(make_config, make_request, prefix, path, hit):
    table = table_with(make_config, {"path": {"prefix": prefix}})
    assert (route_for(table, make_request(path)) == "hit") is hit


def test_path_prefix_root_matches_everything(make_config, make_request):
    table = table_with(make_config, {"path": {"prefix": "/"}})
    for path in (b"/", b"/x", b"/a/b/c"):
        assert route_for(table, make_request(path)) == "hit"


@pytest.mark.parametrize(
    ("path", "hit"),
    [(b"/users/42", True), (b"/users/42/x", False), (b"/users/", False), (b"/v/users/4", False)],
)
def test_path_regex_is_a_full_match(make_config, make_request, path, hit):
    table = table_with(make_config, {"path": {"regex": r"/users/\d+"}})
    assert (route_for(table, make_request(path)) == "hit") is hit


# --- method ----------------------------------------------------------------------


def test_methods(make_config, make_request):
    table = table_with(make_config, {"methods": ["GET", "HEAD"]})
    assert route_for(table, make_request(b"/", method=b"GET")) == "hit"
    assert route_for(table, make_request(b"/", method=b"HEAD")) == "hit"
    assert route_for(table, make_request(b"/", method=b"POST")) is None


# --- headers, query, cookies, labels ---------------------------------------------------

STRING_CASES = [
    ({"exact": "gray"}, [b"gray"], [b"Gray", b"grayer", None]),
    ({"prefix": "gr"}, [b"gr", b"gray"], [b"Gray", b"agr", None]),
    ({"regex": r"user_gray_\d+"}, [b"user_gray_7", b"user_gray_123"], [b"user_gray_", b"xuser_gray_1", None]),
    ({"present": True}, [b"", b"anything"], [None]),
    ({"present": False}, [None], [b"", b"x"]),
]


@pytest.mark.parametrize(("spec", "hits", "misses"), STRING_CASES)
def test_header(make_config, make_request, spec, hits, misses):
    table = table_with(make_config, {"headers": {"X-Group": spec}})
    for value, hit in [(v, True) for v in hits] + [(v, False) for v in misses]:
        headers = [(b"x-group", value)] if value is not None else [(b"x-other", b"gray")]
        assert (route_for(table, make_request(b"/", headers=headers)) == "hit") is hit, value


def test_header_uses_the_first_value(make_config, make_request):
    table = table_with(make_config, {"headers": {"x-group": {"exact": "a"}}})
    assert route_for(table, make_request(b"/", headers=[(b"x-group", b"a"), (b"x-group", b"b")])) == "hit"
    assert route_for(table, make_request(b"/", headers=[(b"x-group", b"b"), (b"x-group", b"a")])) is None


@pytest.mark.parametrize(("spec", "hits", "misses"), STRING_CASES)
def test_query(make_config, make_request, spec, hits, misses):
    table = table_with(make_config, {"query": {"group": spec}})
    for value, hit in [(v, True) for v in hits] + [(v, False) for v in misses]:
        query = b"x=1&group=" + value if value is not None else b"x=1&groups=gray"
        assert (route_for(table, make_request(b"/", query=query)) == "hit") is hit, value


def test_query_is_decoded(make_config, make_request):
    table = table_with(make_config, {"query": {"name": {"exact": "a b&c"}}})
    assert route_for(table, make_request(b"/", query=b"name=a+b%26c")) == "hit"
    assert route_for(table, make_request(b"/", query=b"name=a+b&c")) is None


@pytest.mark.parametrize(("spec", "hits", "misses"), STRING_CASES)
def test_cookie(make_config, make_request, spec, hits, misses):
    table = table_with(make_config, {"cookies": {"group": spec}})
    for value, hit in [(v, True) for v in hits] + [(v, False) for v in misses]:
        cookie = b"a=1; group=" + value if value is not None else b"a=1; groups=gray"
        assert (route_for(table, make_request(b"/", headers=[(b"cookie", cookie)])) == "hit") is hit, value


def test_cookies_from_several_cookie_headers(make_config, make_request):
    table = table_with(make_config, {"cookies": {"uid": {"exact": "7"}}})
    req = make_request(b"/", headers=[(b"cookie", b"a=1"), (b"cookie", b"uid=7")])
    assert route_for(table, req) == "hit"


def test_cookie_header_is_parsed_only_when_a_route_needs_it(make_config, make_request, monkeypatch):
    calls = []
    real = view_module._parse_cookies
    monkeypatch.setattr(view_module, "_parse_cookies", lambda header: calls.append(header) or real(header))
    table = RouteTable(
        make_config(
            [
                {"name": "api", "service": "shop", "match": {"path": {"prefix": "/api"}}},
                {"name": "gray", "service": "shop", "match": {"cookies": {"gray": {"exact": "1"}}}},
            ]
        )
    )
    cookie = [(b"cookie", b"gray=1")]
    assert route_for(table, make_request(b"/api/x", headers=cookie)) == "api"
    assert calls == []
    assert route_for(table, make_request(b"/other", headers=cookie)) == "gray"
    assert calls == [b"gray=1"]


@pytest.mark.parametrize(("spec", "hits", "misses"), STRING_CASES)
def test_label(make_config, make_request, spec, hits, misses):
    table = table_with(make_config, {"labels": {"group": spec}})
    for value, hit in [(v, True) for v in hits] + [(v, False) for v in misses]:
        if value is None:
            meta = b'{"other": "gray"}'
        else:
            meta = b'{"x": "1", "group": "' + value + b'"}'
        req = make_request(b"/", headers=[(b"x-request-metadata", meta)])
        assert (route_for(table, req) == "hit") is hit, value


# --- all together ---------------------------------------------------------------------


def test_every_condition_must_hold(make_config, make_request):
    match = {
        "host": ["shop.example.com"],
        "path": {"prefix": "/cart"},
        "methods": ["POST"],
        "headers": {"x-canary": {"exact": "always"}},
        "query": {"debug": {"present": False}},
        "cookies": {"uid": {"present": True}},
        "labels": {"tenant": {"exact": "acme"}},
    }
    table = table_with(make_config, match)
    good = {
        "path": b"/cart/1",
        "host": b"shop.example.com",
        "method": b"POST",
        "query": b"",
        "headers": [
            (b"x-canary", b"always"),
            (b"cookie", b"uid=9"),
            (b"x-request-metadata", b'{"tenant": "acme"}'),
        ],
    }
    assert route_for(table, make_request(**good)) == "hit"
    broken = [
        {"path": b"/carts"},
        {"host": b"other.example.com"},
        {"method": b"GET"},
        {"query": b"debug=1"},
        {"headers": [(b"cookie", b"uid=9"), (b"x-request-metadata", b'{"tenant": "acme"}')]},
        {"headers": [(b"x-canary", b"always"), (b"x-request-metadata", b'{"tenant": "acme"}')]},
        {"headers": [(b"x-canary", b"always"), (b"cookie", b"uid=9")]},
    ]
    for change in broken:
        assert route_for(table, make_request(**{**good, **change})) is None, change
