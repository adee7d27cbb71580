"""proxy._fast.routing: the per-request routing objects, pure twin and compiled form compared.

A ``RouteTable`` is built with the form ``load("routing")`` chose; ``port(table, m)`` rebuilds its
per-request objects with the classes of form ``m`` (same checks, plans, sticky keys, bucket
tables, and random draws from an equally seeded generator), so both forms decide the same
requests side by side.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy._fast import compiled, pure
from proxy.errors import NoHealthyUpstream, NoRoute
from proxy.routing import RouteTable
from proxy.routing.choice import BUCKETS
from proxy.routing.plans import EMPTY_PLAN, HeaderPlan
from proxy.routing.view import RequestView
from tests.routing.conftest import build_config, build_request

TWIN = pure("routing")
FAST = compiled("routing")
FORMS = [pytest.param(TWIN, id="pure")] + ([pytest.param(FAST, id="compiled")] if FAST is not None else [])
BOTH = [TWIN, FAST] if FAST is not None else [TWIN]
KIND_NAMES = {number: name for name, number in TWIN.KINDS.items()}

SERVICES = {
    "shop": {
        "versions": {
            "v1": {"endpoints": ["10.0.1.1:8080", "10.0.1.2:8080"]},
            "v2": {"endpoints": ["10.0.2.1:8080"]},
            "v3": {"endpoints": ["10.0.3.1:8080", "10.0.3.2:8080", "10.0.3.3:8080"]},
        }
    },
    "other": {"versions": {"v1": {"endpoints": ["10.0.9.1:8080"]}}},
}
ROUTES = [
    {
        "name": "canary",
        "service": "shop",
        "match": {"path": {"prefix": "/api"}},
        "rules": [
            {"match": {"headers": {"X-User-ID": {"regex": r"^user_gray_\d+$"}}}, "version": "v2"},
            {
                "match": {"headers": {"X-Beta": {"present": True}, "X-Tier": {"prefix": "gold"}}},
                "version": "v3",
            },
        ],
        "split": [
            {"version": "v1", "weight": 80},
            {"version": "v2", "weight": 15},
            {"version": "v3", "weight": 5},
        ],
        "sticky": {"header": "X-User-ID"},
        "mirror": {"version": "v3", "percent": 50},
    },
    {
        "name": "cookies",
        "service": "shop",
        "match": {"path": {"prefix": "/web"}, "methods": ["GET"]},
        "rules": [{"match": {"cookies": {"beta": {"exact": "1"}}}, "version": "v3"}],
        "split": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}],
        "sticky": {"cookie": "uid"},
    },
    {"name": "host", "service": "other", "match": {"host": ["admin.example.com"]}},
    {"name": "labels", "service": "shop", "match": {"labels": {"tenant": {"exact": "acme"}}}},
    {
        "name": "random",
        "service": "shop",
        "match": {"path": {"exact": "/r"}},
        "split": [{"version": "v1", "weight": 1}, {"version": "v3", "weight": 1}],
    },  # fmt: skip
]


def table_of(routes: list[dict] = ROUTES, services: dict = SERVICES) -> RouteTable:
    return RouteTable(build_config(routes, services=services), seed=7)


def port(table: RouteTable, m) -> object:
    """A ``m.Router`` deciding as ``table`` does, built from ``m``'s classes."""
    groups: dict[int, object] = {}
    targets: dict[int, object] = {}

    def group(g):
        if id(g) not in groups:
            groups[id(g)] = m.EndpointGroup(g.service, g.version, g.version_id, g.endpoints)
        return groups[id(g)]

    def target(t):
        if t is None:
            return None
        if id(t) not in targets:
            new = targets[id(t)] = m.Target(
                t.route_name, t.route_id, group(t.group), t.request_plan, t.response_plan
            )
            new.stats_slot = t.stats_slot
            new.fallback = target(t.fallback)
        return targets[id(t)]

    rand = random.Random(99).random
    routes = {}
    for route in table.routes:
        c = route.choice
        header_rules = None
        if c.header_rules is not None:
            header_rules = [
                ([m.HeaderTest(t.name, KIND_NAMES[t.kind], t.operand) for t in tests], target(t))
                for tests, t in c.header_rules
            ]
        choice = m.VersionChoice(
            [target(t) for t in c.targets],
            [(checks, target(t)) for checks, t in c.rules],
            header_rules,
            c.table,
            target(c.constant),
            c.sticky,
            rand,
        )
        mirror = None
        if route.mirror is not None:
            mirror = m.MirrorChoice(
                group(route.mirror.group), route.mirror.probability * 100, route.mirror.max_pending, rand
            )
        routes[id(route)] = m.CompiledRoute(route.name, route.id, route.service, route.checks, choice, mirror)

    class Ported(m.Router):
        pass

    router = Ported()
    router._exact = {path: tuple(routes[id(r)] for r in found) for path, found in table._exact.items()}
    router._nodes = {key: tuple(routes[id(r)] for r in found) for key, found in table._nodes.items()}
    router._root = tuple(routes[id(r)] for r in table._root)
    router._view = RequestView
    router._labels = table._labels
    router.uses_labels = table.uses_labels
    router.stats = table.stats
    return router


def outcome(router, req, client_ip: str = "10.9.8.7"):
    try:
        d = router.decide(req, client_ip)
    except (NoRoute, NoHealthyUpstream) as exc:
        return type(exc).__name__
    return (
        d.route_name,
        d.route_id,
        d.version_name,
        d.version_id,
        d.endpoint.address,
        d.labels,
        d.sticky_hash,
        d.mirror_version,
        None if d.mirror is None else d.mirror.address,
        d.request_plan,
        d.response_plan,
        d.target.stats_slot,
    )


HEADER_VALUES = st.sampled_from(
    [b"user_1", b"user_gray_12", b"user_gray_x", b"", b"gold-plus", b"1", b"acme"]
)
HEADER_NAMES = st.sampled_from([b"x-user-id", b"x-beta", b"x-tier", b"cookie", b"x-other"])
REQUESTS = st.builds(
    lambda path, method, host, headers, meta: build_request(
        path, method=method, host=host, headers=headers + meta
    ),
    st.sampled_from([b"/", b"/api", b"/api/x", b"/apix", b"/web/a", b"/r", b"/r/x"]),
    st.sampled_from([b"GET", b"POST"]),
    st.sampled_from([b"admin.example.com", b"Admin.Example.com.:80", b"example.com", None]),
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5),
    st.sampled_from(
        [[], [(b"x-request-metadata", b'{"tenant": "acme"}')], [(b"x-request-metadata", b"{bad")]]
    ),
)


@pytest.mark.twins
@pytest.mark.skipif(FAST is None, reason="the routing extension is not built")
@settings(max_examples=300, deadline=None)
@given(requests=st.lists(REQUESTS, min_size=1, max_size=20))
def test_both_forms_decide_every_request_the_same(requests):
    table = table_of()
    slow, fast = port(table, TWIN), port(table, FAST)
    for req in requests:
        assert outcome(fast, req) == outcome(slow, req)


@pytest.mark.twins
@pytest.mark.parametrize("m", FORMS)
def test_a_ported_table_decides_as_the_table(m):
    """The port is faithful: on sticky requests the port and the table choose alike."""
    table = table_of()
    router = port(table_of(), m)
    reqs = [build_request(b"/api/x", headers=[(b"x-user-id", b"user_%d" % n)]) for n in range(50)] + [
        build_request(b"/web", headers=[(b"cookie", b"uid=%d" % n)]) for n in range(50)
    ]
    for req in reqs:
        mine, theirs = outcome(router, req), outcome(table, req)
        # Not the endpoints: the mirror draws (another generator) move the round robin of v3.
        assert (mine[:4], mine[6]) == (theirs[:4], theirs[6])


@pytest.mark.parametrize("m", FORMS)
def test_match_then_choose_is_decide(m):
    router = port(table_of(), m)
    req = build_request(b"/api/v", headers=[(b"x-user-id", b"user_gray_3")])
    route, view = router.match(req, "10.0.0.1")
    assert (route.name, view) == ("canary", None)
    assert router.choose(route, view, req, "10.0.0.1").version_name == "v2"
    with pytest.raises(NoRoute):
        router.match(build_request(b"/nothing", host=b"x.example.com"), "10.0.0.1")


@pytest.mark.parametrize("m", FORMS)
def test_an_empty_version_falls_back_to_stable_or_fails(m):
    router = port(table_of(), m)
    groups = {(t.group.service, t.group.version): t.group for r in router._root for t in r.choice.targets}
    req = build_request(b"/x", headers=[(b"x-request-metadata", b'{"tenant": "acme"}')])
    assert router.decide(req, "1.1.1.1").version_name == "v1"  # "labels": one version, the stable v1
    groups["shop", "v1"].set_endpoints([])
    with pytest.raises(NoHealthyUpstream):
        router.decide(req, "1.1.1.1")


@pytest.mark.parametrize("m", FORMS)
def test_endpoint_group_round_robin_and_swap(m):
    g = m.EndpointGroup("s", "v", 3, ["a", "b", "c"])
    assert [g.next() for _ in range(4)] == ["a", "b", "c", "a"]
    g.set_endpoints(["x"])
    assert (g.endpoints, g.next(), g.next()) == (("x",), "x", "x")
    g.set_endpoints([])
    assert g.next is None and g.endpoints == ()
    assert (g.service, g.version, g.version_id) == ("s", "v", 3)


@pytest.mark.parametrize("m", FORMS)
def test_decision_reads_its_target_and_moves_its_endpoint(m):
    group = m.EndpointGroup("shop", "v2", 5, ["e1"])
    req_plan = HeaderPlan(frozenset([b"x-a"]), b"X-B: 1\r\n")
    target = m.Target("r", 2, group, req_plan, EMPTY_PLAN)
    d = target.new_decision("e1", {"a": "b"}, 123, None)
    assert (d.target, d.route_name, d.route_id, d.version_name, d.version_id) == (target, "r", 2, "v2", 5)
    assert (d.request_plan, d.response_plan, d.labels, d.sticky_hash, d.mirror) == (
        req_plan, EMPTY_PLAN, {"a": "b"}, 123, None
    )  # fmt: skip
    # The plans' parts as the data plane reads them: nothing to remove is None.
    assert (target.request_remove, target.request_extra) == (frozenset([b"x-a"]), b"X-B: 1\r\n")
    assert (target.response_remove, target.response_extra) == (None, b"")
    assert d.mirror_version is None
    d.endpoint = "e2"  # the data plane's connect retry
    assert d.endpoint == "e2"
    same = m.Decision(target, "e2", {"a": "b"}, 123, None)
    assert d != same and d == d  # identity, as before
    assert (target.fallback, target.stats_slot) == (None, 0)
    target.stats_slot = 9
    assert d.target.stats_slot == 9


@pytest.mark.parametrize("m", FORMS)
@pytest.mark.parametrize(
    ("kind", "operand", "value", "expected"),
    [
        ("exact", b"a", b"a", True),
        ("exact", b"a", b"ab", False),
        ("exact", b"a", None, False),
        ("prefix", b"gold", b"golden", True),
        ("prefix", b"gold", b"silver", False),
        ("prefix", b"gold", None, False),
        ("regex", __import__("re").compile(rb"u_\d+").fullmatch, b"u_12", True),
        ("regex", __import__("re").compile(rb"u_\d+").fullmatch, b"u_12x", False),
        ("regex", __import__("re").compile(rb".*").fullmatch, None, False),
        ("present", None, b"", True),
        ("present", None, None, False),
        ("absent", None, None, True),
        ("absent", None, b"x", False),
    ],
)
def test_header_test_kinds(m, kind, operand, value, expected):
    test = m.HeaderTest(b"x-h", kind, operand)
    headers = [(b"host", b"h")] + ([(b"x-h", value), (b"x-h", b"second")] if value is not None else [])
    assert test.test(headers) is expected
    assert test(headers) is expected


@pytest.mark.parametrize("m", FORMS)
def test_header_value_is_matching_first_value(m):
    headers = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    first_value = pure("matching").first_value
    for name in (b"a", b"b", b"c"):
        assert m.header_value(headers, name) == first_value(headers, name)


def test_bucket_count_is_the_choice_modules():
    # The compiled form keeps BUCKETS as a C constant, not a module attribute: read the twin.
    assert TWIN.BUCKETS == BUCKETS


def test_the_table_runs_the_form_load_chose():
    from proxy._fast import COMPILED, load

    routing = load("routing")
    assert isinstance(table_of().routes[0], routing.CompiledRoute)
    assert COMPILED["routing"] == (routing is not TWIN)
