"""Version choice: content rules, weighted split, sticky users, empty versions, endpoints, mirror."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import NoHealthyUpstream
from proxy.routing import RouteTable
from proxy.routing.choice import BUCKETS, bucket_table
from proxy.routing.view import RequestView

THREE = {
    "shop": {
        "versions": {
            "v1": {"endpoints": ["10.0.1.1:80"]},
            "v2": {"endpoints": ["10.0.2.1:80"]},
            "v3": {"endpoints": ["10.0.3.1:80"]},
        }
    }
}
IP = "10.9.9.9"


def split_route(split: dict[str, int], **extra) -> dict:
    return {
        "name": "r",
        "service": "shop",
        "split": [{"version": v, "weight": w} for v, w in split.items()],
        **extra,
    }


def versions_of(table: RouteTable, requests, client_ip: str = IP) -> Counter:
    return Counter(table.decide(req, client_ip).version_name for req in requests)


# --- the bucket table ----------------------------------------------------------------------


def test_bucket_table_gives_non_stable_versions_the_low_buckets():
    table = bucket_table([(0, 70), (1, 30)], stable=0)
    assert len(table) == BUCKETS
    assert list(table[:3000]) == [1] * 3000
    assert list(table[3000:]) == [0] * 7000


def test_bucket_table_three_ways_in_split_order_stable_last():
    table = bucket_table([(2, 20), (0, 50), (1, 30)], stable=0)
    assert Counter(table) == {2: 2000, 1: 3000, 0: 5000}
    assert set(table[:2000]) == {2}
    assert set(table[2000:5000]) == {1}
    assert set(table[5000:]) == {0}


def test_bucket_table_weight_zero_and_absent_stable():
    assert Counter(bucket_table([(0, 100), (1, 0)], stable=0)) == {0: BUCKETS}
    assert Counter(bucket_table([(1, 1), (2, 3)], stable=0)) == {1: 2500, 2: 7500}
    with pytest.raises(ValueError):
        bucket_table([(0, 0), (1, 0)], stable=0)


@given(
    weights=st.lists(st.integers(0, 1000), min_size=2, max_size=6),
    raised=st.data(),
)
def test_raising_one_weight_never_takes_a_bucket_from_that_version(weights, raised):
    """N-way monotonicity: every bucket a version owns, it still owns once its weight is raised."""
    stable = 0
    k = raised.draw(st.integers(0, len(weights) - 1))
    extra = raised.draw(st.integers(1, 1000))
    before = [(slot, weight) for slot, weight in enumerate(weights)]
    after = [(slot, weight + (extra if slot == k else 0)) for slot, weight in enumerate(weights)]
    if sum(weights) == 0:
        return
    old, new = bucket_table(before, stable), bucket_table(after, stable)
    assert all(new[b] == k for b in range(BUCKETS) if old[b] == k)


@given(total=st.integers(1, 1000), data=st.data())
def test_two_way_moves_users_only_from_stable_to_canary(total, data):
    w1 = data.draw(st.integers(0, total))
    w2 = data.draw(st.integers(w1, total))
    old = bucket_table([(0, total - w1), (1, w1)], stable=0)
    new = bucket_table([(0, total - w2), (1, w2)], stable=0)
    assert all(new[b] == 1 for b in range(BUCKETS) if old[b] == 1)


# --- sticky ------------------------------------------------------------------------------


@given(
    salt=st.text(max_size=12),
    keys=st.lists(st.binary(min_size=1, max_size=24), min_size=1, max_size=40),
    stable_weight=st.integers(1, 100),
    data=st.data(),
)
def test_sticky_users_on_the_canary_stay_there_when_its_weight_grows(
    make_config, make_request, salt, keys, stable_weight, data
):
    w1 = data.draw(st.integers(0, 99))
    w2 = data.draw(st.integers(w1 + 1, 100))

    def table(weight: int) -> RouteTable:
        route = split_route({"v1": stable_weight, "v2": weight}, sticky={"header": "X-User", "salt": salt})
        return RouteTable(make_config([route]))

    low, high = table(w1), table(w2)
    for key in keys:
        req = make_request(b"/", headers=[(b"x-user", key)])
        if low.decide(req, IP).version_name == "v2":
            assert high.decide(req, IP).version_name == "v2", key


def test_sticky_same_key_same_version_across_tables(make_config, make_request):
    """Two tables built from the same config (like two workers, or two replicas) agree per key."""
    config = make_config([split_route({"v1": 50, "v2": 50}, sticky={"header": "X-User-ID"})])
    first, second = RouteTable(config, seed=1), RouteTable(config, seed=2)
    seen = Counter()
    for i in range(500):
        req = make_request(b"/", headers=[(b"x-user-id", b"user_%d" % i)])
        a, b = first.decide(req, IP), second.decide(req, IP)
        assert (a.version_name, a.sticky_hash) == (b.version_name, b.sticky_hash)
        assert a.sticky_hash >= 0
        assert all(first.decide(req, IP).version_name == a.version_name for _ in range(3))
        seen[a.version_name] += 1
    assert 200 < seen["v2"] < 300  # and the users are really split


def test_sticky_salt_defaults_to_the_route_name(make_config, make_request):
    def table(**sticky) -> RouteTable:
        return RouteTable(
            make_config([split_route({"v1": 50, "v2": 50}, sticky={"header": "X-U", **sticky})])
        )

    by_name, by_same_salt, by_other_salt = table(), table(salt="r"), table(salt="other")
    reqs = [make_request(b"/", headers=[(b"x-u", b"%d" % i)]) for i in range(200)]
    hashes = [by_name.decide(req, IP).sticky_hash for req in reqs]
    assert hashes == [by_same_salt.decide(req, IP).sticky_hash for req in reqs]
    assert hashes != [by_other_salt.decide(req, IP).sticky_hash for req in reqs]


def test_sticky_by_cookie_and_by_client_ip(make_config, make_request):
    by_cookie = RouteTable(make_config([split_route({"v1": 50, "v2": 50}, sticky={"cookie": "uid"})]))
    by_ip = RouteTable(make_config([split_route({"v1": 50, "v2": 50}, sticky={"client_ip": True})]))
    for i in range(50):
        req = make_request(b"/", headers=[(b"cookie", b"a=1; uid=%d" % i)])
        assert len({by_cookie.decide(req, IP).version_name for _ in range(5)}) == 1
        ip = f"192.0.2.{i}"
        assert len({by_ip.decide(make_request(b"/"), ip).version_name for _ in range(5)}) == 1
        assert by_ip.decide(make_request(b"/"), ip).sticky_hash >= 0


def test_without_a_key_the_split_is_per_request(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 70, "v2": 30}, sticky={"header": "X-U"})]), seed=3)
    decisions = [table.decide(make_request(b"/", headers=[(b"x-u", b"")]), IP) for _ in range(20_000)]
    assert {d.sticky_hash for d in decisions} == {-1}
    share = sum(d.version_name == "v2" for d in decisions) / len(decisions)
    assert abs(share - 0.30) < 0.015


# --- per-request split -------------------------------------------------------------------


def test_seventy_thirty_over_100k_requests(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 70, "v2": 30})]), seed=7)
    req = make_request(b"/")
    counts = Counter(table.decide(req, IP).version_name for _ in range(100_000))
    assert abs(counts["v1"] / 100_000 - 0.70) < 0.01
    assert abs(counts["v2"] / 100_000 - 0.30) < 0.01


def test_three_way_split(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 5, "v2": 3, "v3": 2})], services=THREE), seed=11)
    req = make_request(b"/")
    counts = Counter(table.decide(req, IP).version_name for _ in range(100_000))
    for version, share in (("v1", 0.5), ("v2", 0.3), ("v3", 0.2)):
        assert abs(counts[version] / 100_000 - share) < 0.01, counts


def test_weight_zero_is_never_chosen(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 0, "v2": 1, "v3": 0})], services=THREE), seed=5)
    assert versions_of(table, [make_request(b"/")] * 2000) == {"v2": 2000}
    table = RouteTable(make_config([split_route({"v1": 3, "v2": 0, "v3": 1})], services=THREE), seed=5)
    assert set(versions_of(table, [make_request(b"/")] * 2000)) == {"v1", "v3"}


def test_no_split_goes_to_the_stable_version(make_config, make_request):
    services = {"shop": {"stable": "v2", "versions": SERVICES_TWO}}
    table = RouteTable(make_config([{"name": "r", "service": "shop"}], services=services))
    assert versions_of(table, [make_request(b"/")] * 10) == {"v2": 10}
    table = RouteTable(make_config([{"name": "r", "service": "shop"}]))  # the first version listed
    assert versions_of(table, [make_request(b"/")] * 10) == {"v1": 10}


SERVICES_TWO = {"v1": {"endpoints": ["10.0.1.1:80"]}, "v2": {"endpoints": ["10.0.2.1:80"]}}


# --- content rules -------------------------------------------------------------------------


def rules_table(make_config, **extra) -> RouteTable:
    rules = [
        {"match": {"headers": {"X-User-ID": {"regex": r"^user_gray_\d+$"}}}, "version": "v2"},
        {"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v3"},
        {"match": {"cookies": {"gray": {"exact": "1"}}}, "version": "v2"},
        {"match": {"labels": {"cohort": {"exact": "beta"}}}, "version": "v3"},
    ]
    return RouteTable(make_config([split_route({"v1": 100}, rules=rules, **extra)], services=THREE))


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ([], "v1"),
        ([(b"x-user-id", b"user_gray_17")], "v2"),
        ([(b"x-user-id", b"user_gray_")], "v1"),
        ([(b"x-user-id", b"user_17")], "v1"),
        ([(b"x-canary", b"always")], "v3"),
        ([(b"x-user-id", b"user_gray_1"), (b"x-canary", b"always")], "v2"),  # rules in order
        ([(b"cookie", b"a=b; gray=1")], "v2"),
        ([(b"x-request-metadata", b'{"cohort": "beta"}')], "v3"),
        ([(b"x-request-metadata", b'{"cohort": "ga"}')], "v1"),
    ],
)
def test_content_rules_come_before_the_split(make_config, make_request, headers, version):
    table = rules_table(make_config)
    decision = table.decide(make_request(b"/", headers=headers), IP)
    assert decision.version_name == version
    assert decision.sticky_hash == -1


def test_a_rule_wins_over_a_sticky_split(make_config, make_request):
    table = rules_table(make_config, sticky={"header": "X-User-ID"})
    assert table.decide(make_request(b"/", headers=[(b"x-user-id", b"user_gray_3")]), IP).version_name == "v2"


HEADER_RULES = [
    {"match": {"headers": {"X-User-ID": {"regex": r"^user_gray_\d+$"}}}, "version": "v2"},
    {"match": {"headers": {"X-Canary": {"exact": "always"}, "X-Beta": {"present": True}}}, "version": "v3"},
    {"match": {"headers": {"X-Tier": {"prefix": "gold"}, "X-Block": {"present": False}}}, "version": "v3"},
]
header_names = st.sampled_from([b"x-user-id", b"x-canary", b"x-beta", b"x-tier", b"x-block", b"accept"])
header_values = st.sampled_from([b"", b"user_gray_1", b"user_gray_", b"user_9", b"always", b"gold", b"gilt"])
request_headers = st.lists(st.tuples(header_names, header_values), max_size=6)


@pytest.mark.parametrize("sticky", [None, {"header": "X-User-ID"}])
def test_header_only_choice_needs_no_view(make_config, sticky):
    extra = {} if sticky is None else {"sticky": sticky}
    route = split_route({"v1": 90, "v2": 10}, rules=HEADER_RULES, **extra)
    assert not RouteTable(make_config([route], services=THREE)).routes[0].choice.needs_view


@pytest.mark.parametrize(
    ("rule", "sticky"),
    [
        ({"cookies": {"gray": {"exact": "1"}}}, None),
        ({"query": {"gray": {"exact": "1"}}}, None),
        ({"labels": {"cohort": {"exact": "beta"}}}, None),
        ({"methods": ["POST"]}, None),
        ({"headers": {"X-User-ID": {"exact": "u"}}}, {"cookie": "uid"}),
        ({"headers": {"X-User-ID": {"exact": "u"}}}, {"client_ip": True}),
    ],
)
def test_a_choice_reading_more_than_headers_needs_the_view(make_config, rule, sticky):
    extra = {} if sticky is None else {"sticky": sticky}
    rules = [{"match": rule, "version": "v2"}]
    table = RouteTable(make_config([split_route({"v1": 90, "v2": 10}, rules=rules, **extra)], services=THREE))
    assert table.routes[0].choice.needs_view


@given(headers=request_headers)
def test_header_list_choice_equals_the_view_choice(make_config, make_request, headers):
    """``choose_headers`` (no RequestView) gives what ``choose`` on a view gives, sticky hash included."""
    route = split_route({"v1": 90, "v2": 10}, rules=HEADER_RULES, sticky={"header": "X-User-ID"})
    # Two tables with the same seed: a request without a key draws the same random bucket in both.
    by_view, by_headers = (RouteTable(make_config([route], services=THREE), seed=7) for _ in range(2))
    req = make_request(b"/", headers=headers)
    target, sticky_hash = by_view.routes[0].choice.choose(RequestView(req, IP, lambda req: None))
    same_target, same_hash = by_headers.routes[0].choice.choose_headers(req.headers)
    assert (same_target.version_name, same_hash) == (target.version_name, sticky_hash)


# --- empty versions --------------------------------------------------------------------------


def empty_v2(on_empty: str, stable_endpoints: list[str] | None = None) -> dict:
    return {
        "shop": {
            "on_empty_version": on_empty,
            "versions": {
                "v1": {"endpoints": ["10.0.1.1:80"] if stable_endpoints is None else stable_endpoints},
                "v2": {"endpoints": []},
            },
        }
    }


def test_empty_version_share_goes_to_stable(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 50, "v2": 50})], services=empty_v2("stable")), seed=1)
    counts = versions_of(table, [make_request(b"/")] * 1000)
    assert counts == {"v1": 1000}
    assert 400 < table.stats.empty_version_fallbacks < 600


def test_empty_version_is_a_503_when_configured(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 0, "v2": 1})], services=empty_v2("503")))
    with pytest.raises(NoHealthyUpstream) as info:
        table.decide(make_request(b"/"), IP)
    assert info.value.status == 503


def test_empty_stable_is_a_503(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 1, "v2": 1})], services=empty_v2("stable", [])))
    with pytest.raises(NoHealthyUpstream):
        table.decide(make_request(b"/"), IP)


def test_a_rule_to_an_empty_version_falls_back_too(make_config, make_request):
    rule = {"match": {"headers": {"x-canary": {"present": True}}}, "version": "v2"}
    config = make_config([split_route({"v1": 1}, rules=[rule])], services=empty_v2("stable"))
    decision = RouteTable(config).decide(make_request(b"/", headers=[(b"x-canary", b"1")]), IP)
    assert decision.version_name == "v1"


def test_endpoints_change_at_runtime(make_config, make_request):
    """A group emptied later (e.g. by health checking) is treated like a configured empty one."""
    table = RouteTable(make_config([split_route({"v1": 0, "v2": 1})]))
    assert table.decide(make_request(b"/"), IP).version_name == "v2"
    table.group("shop", "v2").set_endpoints([])
    assert table.decide(make_request(b"/"), IP).version_name == "v1"


# --- endpoints -----------------------------------------------------------------------------


def test_round_robin_within_a_version(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 1})]))
    addresses = [table.decide(make_request(b"/"), IP).endpoint.address for _ in range(6)]
    assert addresses == ["10.0.1.1:8080", "10.0.1.2:8080"] * 3


def test_decision_fields(make_config, make_request):
    services = {
        "shop": {
            "pool": {"max_idle": 3},
            "versions": {"v1": {"endpoints": ["[::1]:8080"]}, "v2": {"endpoints": ["b.internal:81"]}},
        },
        "other": {"versions": {"only": {"endpoints": ["10.0.0.1:1"]}}},
    }
    config = make_config(
        [
            {"name": "o", "service": "other", "match": {"path": {"prefix": "/o"}}},
            split_route({"v1": 0, "v2": 1}),
        ],
        services=services,
    )
    table = RouteTable(config)
    decision = table.decide(make_request(b"/x"), IP)
    assert (decision.route_name, decision.route_id) == ("r", 1)
    assert table.versions[decision.version_id] == ("shop", "v2")
    endpoint = decision.endpoint
    assert (endpoint.host, endpoint.port, endpoint.address, endpoint.key) == (
        "b.internal",
        81,
        "b.internal:81",
        ("b.internal", 81),
    )
    assert (endpoint.service, endpoint.version, endpoint.pool.max_idle) == ("shop", "v2", 3)
    assert decision.labels is None and decision.mirror is None and decision.mirror_version is None
    target = decision.target
    assert (decision.route_name, decision.route_id) == (target.route_name, target.route_id)
    assert (decision.version_name, decision.version_id) == (target.version_name, target.version_id)
    assert decision.request_plan is target.request_plan and decision.response_plan is target.response_plan
    assert repr(decision) == (
        "Decision(route='r', version='v2', endpoint='b.internal:81', sticky_hash=-1, mirror=None)"
    )
    assert decision != table.decide(make_request(b"/x"), IP)  # each request has its own decision
    v1 = table.group("shop", "v1").endpoints[0]
    assert (v1.host, v1.address, v1.key) == ("::1", "[::1]:8080", ("::1", 8080))
    other = table.decide(make_request(b"/o"), IP).endpoint
    assert other.pool == config.upstream  # no service pool: the top-level one
    assert {e.address for e in table.endpoints} == {"[::1]:8080", "b.internal:81", "10.0.0.1:1"}


# --- mirror --------------------------------------------------------------------------------


def test_mirror_all_requests(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 1}, mirror={"version": "v2"})]))
    decision = table.decide(make_request(b"/"), IP)
    assert decision.version_name == "v1"
    assert decision.mirror.address == "10.0.2.1:8080"
    assert decision.mirror_version == "v2"


def test_mirror_percent(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 1}, mirror={"version": "v2", "percent": 25})]), seed=9)
    mirrored = sum(table.decide(make_request(b"/"), IP).mirror is not None for _ in range(20_000))
    assert abs(mirrored / 20_000 - 0.25) < 0.015


def test_mirror_skips_requests_already_going_to_the_mirror_version(make_config, make_request):
    table = RouteTable(make_config([split_route({"v2": 1}, mirror={"version": "v2"})]))
    assert table.decide(make_request(b"/"), IP).mirror is None


def test_mirror_zero_percent(make_config, make_request):
    table = RouteTable(make_config([split_route({"v1": 1}, mirror={"version": "v2", "percent": 0})]))
    assert all(table.decide(make_request(b"/"), IP).mirror is None for _ in range(100))
