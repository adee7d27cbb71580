"""Routes are tried in config order and the first that matches wins, whatever the index does."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import NoRoute
from proxy.routing import RouteTable


def route_for(table: RouteTable, req) -> str | None:
    try:
        return table.decide(req, "10.9.9.9").route_name
    except NoRoute:
        return None


def test_first_match_wins_even_when_a_later_route_is_more_specific(make_config, make_request):
    table = RouteTable(
        make_config(
            [
                {"name": "api", "service": "shop", "match": {"path": {"prefix": "/api"}}},
                {"name": "users", "service": "shop", "match": {"path": {"prefix": "/api/users"}}},
                {"name": "login", "service": "shop", "match": {"path": {"exact": "/api/login"}}},
            ]
        )
    )
    assert route_for(table, make_request(b"/api/users/1")) == "api"
    assert route_for(table, make_request(b"/api/login")) == "api"


def test_order_across_kinds(make_config, make_request):
    table = RouteTable(
        make_config(
            [
                {"name": "login", "service": "shop", "match": {"path": {"exact": "/api/login"}}},
                {"name": "posts", "service": "shop", "match": {"methods": ["POST"]}},
                {"name": "numbers", "service": "shop", "match": {"path": {"regex": "/api/[0-9]+"}}},
                {"name": "deep", "service": "shop", "match": {"path": {"prefix": "/api/v2/users"}}},
                {"name": "api", "service": "shop", "match": {"path": {"prefix": "/api"}}},
                {"name": "gray-host", "service": "shop", "match": {"host": ["gray.example.com"]}},
                {"name": "rest", "service": "shop"},
            ]
        )
    )
    cases = [
        (b"/api/login", b"POST", b"example.com", "login"),
        (b"/api/login/x", b"POST", b"example.com", "posts"),
        (b"/api/12", b"GET", b"example.com", "numbers"),
        (b"/api/v2/users/7", b"GET", b"example.com", "deep"),
        (b"/api/v2/user", b"GET", b"example.com", "api"),
        (b"/api", b"GET", b"example.com", "api"),
        (b"/apis", b"GET", b"gray.example.com", "gray-host"),
        (b"/", b"GET", b"example.com", "rest"),
    ]
    for path, method, host, name in cases:
        assert route_for(table, make_request(path, method=method, host=host)) == name, path


def test_no_route_is_a_404(make_config, make_request):
    table = RouteTable(
        make_config([{"name": "api", "service": "shop", "match": {"path": {"prefix": "/api"}}}])
    )
    with pytest.raises(NoRoute) as info:
        table.decide(make_request(b"/apix"), "10.9.9.9")
    assert info.value.status == 404
    assert info.value.flag == "NR"


def test_no_routes_at_all(make_config, make_request):
    table = RouteTable(make_config([]))
    with pytest.raises(NoRoute):
        table.decide(make_request(b"/"), "10.9.9.9")


def test_route_ids_follow_config_order(make_config, make_request):
    table = RouteTable(
        make_config(
            [
                {"name": "a", "service": "shop", "match": {"path": {"prefix": "/a"}}},
                {"name": "b", "service": "shop"},
            ]
        )
    )
    assert table.route_names == ("a", "b")
    assert table.decide(make_request(b"/a"), "10.9.9.9").route_id == 0
    assert table.decide(make_request(b"/b"), "10.9.9.9").route_id == 1


# --- the index never changes the answer: compare with trying every route in order ----

SEGMENTS = ["api", "v1", "users", "a", "x"]
path_text = st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=4).map(lambda s: "/" + "/".join(s))
request_path = st.tuples(path_text, st.sampled_from(["", "/", "x", "/x"])).map(lambda t: t[0] + t[1])
path_match = st.one_of(
    st.none(),
    st.builds(lambda p: {"exact": p}, path_text),
    st.builds(lambda p, slash: {"prefix": p + slash}, path_text, st.sampled_from(["", "/"])),
    st.builds(lambda p: {"regex": re.escape(p) + "(/.*)?"}, path_text),
)
route_match = st.fixed_dictionaries(
    {},
    optional={
        "path": path_match.filter(lambda m: m is not None),
        "methods": st.sampled_from([["GET"], ["POST"], ["GET", "POST"]]),
        "headers": st.sampled_from([{"x-a": {"present": True}}, {"x-a": {"exact": "1"}}]),
    },
)


def reference(routes: list[dict], path: str, method: str, headers: dict[str, str]) -> str | None:
    """The definition: the first route, in order, whose every condition holds."""
    for route in routes:
        match = route["match"]
        pm = match.get("path")
        if pm is not None:
            if "exact" in pm and path != pm["exact"]:
                continue
            if "prefix" in pm:
                prefix = pm["prefix"].rstrip("/") or "/"
                if prefix != "/" and not (path == prefix or path.startswith(prefix + "/")):
                    continue
            if "regex" in pm and re.fullmatch(pm["regex"], path) is None:
                continue
        if "methods" in match and method not in match["methods"]:
            continue
        wanted = match.get("headers", {}).get("x-a")
        if wanted is not None:
            if "present" in wanted and "x-a" not in headers:
                continue
            if "exact" in wanted and headers.get("x-a") != wanted["exact"]:
                continue
        return route["name"]
    return None


@given(
    matches=st.lists(route_match, max_size=8),
    requests=st.lists(
        st.tuples(
            request_path, st.sampled_from(["GET", "POST"]), st.sampled_from([{}, {"x-a": "1"}, {"x-a": "2"}])
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_index_agrees_with_trying_every_route(make_config, make_request, matches, requests):
    routes = [{"name": f"r{i}", "service": "shop", "match": match} for i, match in enumerate(matches)]
    table = RouteTable(make_config(routes))
    for path, method, headers in requests:
        req = make_request(
            path.encode(),
            method=method.encode(),
            headers=[(k.encode(), v.encode()) for k, v in headers.items()],
        )
        assert route_for(table, req) == reference(routes, path, method, headers), (path, method, headers)
