"""Version choice through a real graylane: content rules, weighted splits (counted by the
backends), sticky users across two replicas, empty versions, the version response header."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
from e2e_support import (
    assignments,
    blast,
    can_bind,
    config,
    counts,
    example,
    get,
    raw_get,
    service,
    serving,
    split,
    versions_of,
)

from proxy.testing import Backend, GraylaneProcess, RecordedRequest

pytestmark = pytest.mark.integration


# --- content rules -------------------------------------------------------------------

GRAY_RULES = [
    {"match": {"headers": {"X-User-ID": {"regex": r"^user_gray_\d+$"}}}, "version": "v2"},
    {"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v2"},
    {"match": {"cookies": {"canary": {"exact": "1"}}}, "version": "v2"},
    {"match": {"labels": {"cohort": {"exact": "beta"}}}, "version": "v2"},
]


@pytest.fixture(scope="module")
def _gray_rules_server() -> Iterator[tuple[dict[str, Backend], GraylaneProcess]]:
    def make(backends: dict[str, Backend]) -> str:
        route = {"name": "api", "service": "api", "rules": GRAY_RULES, "split": split(v1=100, v2=0)}
        return config({"api": service(backends["v1"], backends["v2"])}, [route])

    with serving(make, "v1", "v2") as running:
        yield running


@pytest.fixture
def gray_rules(_gray_rules_server) -> tuple[tuple[Backend, Backend], GraylaneProcess]:
    """v1 and v2 (cleared) behind a graylane with GRAY_RULES and a 100/0 split."""
    backends, proxy = _gray_rules_server
    for origin in backends.values():
        origin.clear()
    return (backends["v1"], backends["v2"]), proxy


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ({"X-User-ID": "user_gray_42"}, "v2"),
        ({"X-User-ID": "user_gray_7"}, "v2"),
        ({"X-User-ID": "user_42"}, "v1"),
        ({"X-User-ID": "user_gray_42x"}, "v1"),  # the regex is a full match
        ({"X-Canary": "always"}, "v2"),
        ({"X-Canary": "sometimes"}, "v1"),
        ({"Cookie": "theme=dark; canary=1"}, "v2"),
        ({"Cookie": "canary=0"}, "v1"),
        ({"X-Request-Metadata": json.dumps({"cohort": "beta", "region": "eu"})}, "v2"),
        ({"X-Request-Metadata": json.dumps({"cohort": "ga"})}, "v1"),
        ({}, "v1"),
    ],
)
def test_content_rules_pick_the_version_every_time(gray_rules, headers, version):
    (v1, v2), proxy = gray_rules
    assert versions_of(proxy, 50, "/", headers) == Counter({version: 50})
    assert counts(v1, v2)[version] == 50  # and the backends agree


def test_content_rules_come_before_the_split(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    route = {"name": "api", "service": "api", "rules": GRAY_RULES, "split": split(v1=0, v2=100)}
    rules_to_v1 = [{**rule, "version": "v1"} for rule in GRAY_RULES]
    proxy = graylane(config({"api": service(v1, v2)}, [{**route, "rules": rules_to_v1}]))
    assert versions_of(proxy, 30, "/", {"X-Canary": "always"}) == Counter(v1=30)
    assert versions_of(proxy, 30, "/") == Counter(v2=30)


# --- weighted splits -----------------------------------------------------------------


@pytest.mark.slow
def test_100k_requests_split_70_30_land_within_one_point(backend, graylane):
    """The promise: conf/weighted.yaml's 70/30, over 100,000 requests counted by the backends."""
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(example("weighted.yaml", {"v1": v1, "v2": v2}))
    total = 100_000
    started = time.monotonic()
    tally = blast(proxy.address, [raw_get("/status/204")] * total, connections=4, batch=200, timeout=60)
    elapsed = time.monotonic() - started
    assert sum(tally.values()) == total
    assert {status for status, _ in tally} == {204}, tally
    seen = counts(v1, v2)
    assert seen["v1"] + seen["v2"] == total, seen
    share = seen["v1"] / total
    print(f"100k pipelined requests in {elapsed:.1f}s: v1 {share:.2%}, v2 {1 - share:.2%}")
    assert abs(share - 0.70) <= 0.01, seen
    # The clients saw the same split as the backends.
    assert tally[204, "v1"] == seen["v1"]


def test_three_way_split(backend, graylane):
    v1, v2, v3 = backend("v1"), backend("v2"), backend("v3")
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=30, v3=20)}
    proxy = graylane(config({"api": service(v1, v2, v3)}, [route]))
    total = 12_000
    tally = blast(proxy.address, [raw_get("/status/204")] * total)
    assert sum(tally.values()) == total
    seen = counts(v1, v2, v3)
    assert sum(seen.values()) == total
    for name, want in (("v1", 0.50), ("v2", 0.30), ("v3", 0.20)):
        assert abs(seen[name] / total - want) <= 0.02, seen  # > 4 standard deviations


def test_a_version_with_weight_zero_gets_nothing(backend, graylane):
    v1, v2, v3 = backend("v1"), backend("v2"), backend("v3")
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=0, v3=50)}
    proxy = graylane(config({"api": service(v1, v2, v3)}, [route]))
    total = 4000
    blast(proxy.address, [raw_get("/status/204")] * total)
    seen = counts(v1, v2, v3)
    assert seen["v2"] == 0
    assert v2.connections_accepted == 0
    assert seen["v1"] + seen["v3"] == total
    assert abs(seen["v1"] / total - 0.5) <= 0.05, seen


# --- sticky --------------------------------------------------------------------------

USERS = 200
REPEATS = 8


def _session(req: RecordedRequest) -> str | None:
    cookies = SimpleCookie(req.header("Cookie") or "")
    return cookies["session"].value if "session" in cookies else None


STICKY_SOURCES = {
    "header": (
        {"header": "X-User-ID"},
        lambda i: [("X-User-ID", f"user-{i}")],
        lambda r: r.header("X-User-ID"),
    ),
    "cookie": ({"cookie": "session"}, lambda i: [("Cookie", f"theme=dark; session=s{i}")], _session),
}


# Replicas may run different builds: the compiled hash and its pure-Python twin must agree.
BUILDS = {"same-build": None, "one-on-python-twins": {"GRAYLANE_NO_EXTENSIONS": "1"}}


@pytest.mark.parametrize("build", list(BUILDS))
@pytest.mark.parametrize("source", list(STICKY_SOURCES))
def test_sticky_users_keep_their_version_in_two_replicas(backend, graylane, source, build):
    sticky, key_headers, key_of = STICKY_SOURCES[source]
    v1, v2 = backend("v1"), backend("v2")
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=50), "sticky": sticky}
    text = config({"api": service(v1, v2)}, [route])
    replicas = {"replica-a": graylane(text), "replica-b": graylane(text, BUILDS[build])}
    for host, proxy in replicas.items():
        requests = [
            raw_get("/status/204", [("Host", host), *key_headers(i)])
            for _ in range(REPEATS)
            for i in range(USERS)
        ]
        assert sum(blast(proxy.address, requests).values()) == len(requests)
    seen = assignments([v1, v2], key_of)
    assert len(seen) == 2 * USERS, "every user reached the backends through both replicas"
    flips = {key: versions for key, versions in seen.items() if len(versions) != 1}
    assert not flips, f"users answered by more than one version: {flips}"
    a = {key: versions for (host, key), versions in seen.items() if host == "replica-a"}
    b = {key: versions for (host, key), versions in seen.items() if host == "replica-b"}
    assert a == b, "the two replicas disagree on some users"
    on_v2 = sum(1 for versions in a.values() if versions == {"v2"})
    assert 0.35 * USERS <= on_v2 <= 0.65 * USERS, f"{on_v2} of {USERS} users on v2 with a 50/50 split"


@pytest.mark.skipif(not can_bind("127.0.0.39"), reason="no loopback addresses beyond 127.0.0.1")
@pytest.mark.parametrize("build", list(BUILDS))
def test_sticky_by_client_ip_in_two_replicas(backend, graylane, build):
    v1, v2 = backend("v1"), backend("v2")
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=50), "sticky": {"client_ip": True}}
    text = config({"api": service(v1, v2)}, [route])
    replicas = {"replica-a": graylane(text), "replica-b": graylane(text, BUILDS[build])}
    clients = [f"127.0.0.{n}" for n in range(10, 40)]
    for host, proxy in replicas.items():
        for ip in clients:
            requests = [raw_get("/status/204", {"Host": host})] * REPEATS
            assert sum(blast(proxy.address, requests, connections=2, source=ip).values()) == REPEATS
    seen = assignments([v1, v2], lambda r: r.header("X-Forwarded-For"))
    assert {key for _, key in seen} == set(clients)
    assert len(seen) == 2 * len(clients)
    assert all(len(versions) == 1 for versions in seen.values()), seen
    a = {key: versions for (host, key), versions in seen.items() if host == "replica-a"}
    b = {key: versions for (host, key), versions in seen.items() if host == "replica-b"}
    assert a == b
    assert {frozenset(versions) for versions in a.values()} == {frozenset({"v1"}), frozenset({"v2"})}


# --- a version without endpoints -----------------------------------------------------


def test_an_empty_versions_share_goes_to_stable(backend, graylane):
    v1 = backend("v1")
    services = {"api": {"versions": {"v1": {"endpoints": [v1.endpoint]}, "v2": {"endpoints": []}}}}
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=50)}
    observability = {"version_header": "X-Graylane-Version"}
    proxy = graylane(config(services, [route], observability=observability))
    tally = blast(proxy.address, [raw_get("/")] * 400, connections=2)
    assert tally == Counter({(200, "v1"): 400})
    assert len(v1.requests) == 400
    for _ in range(20):  # the version header names the version that answered
        assert get(proxy).get_all("X-Graylane-Version") == ["v1"]


def test_an_empty_versions_share_is_a_503_when_configured(backend, graylane):
    v1 = backend("v1")
    versions = {"v1": {"endpoints": [v1.endpoint]}, "v2": {"endpoints": []}}
    services = {"api": {"versions": versions, "on_empty_version": "503"}}
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=50)}
    proxy = graylane(config(services, [route]))
    tally = blast(proxy.address, [raw_get("/")] * 400, connections=2)
    assert set(tally) == {(200, "v1"), (503, None)}, tally
    assert 120 <= tally[503, None] <= 280, tally
    assert len(v1.requests) == tally[200, "v1"]
    for _ in range(100):  # each try is a fair coin: bounded, and practically never exhausted
        resp = get(proxy)
        if resp.status == 503:
            break
    assert resp.status == 503
    assert resp.json()["request_id"] == resp.get("X-Request-ID")


# --- the version response header ---------------------------------------------------


def test_version_header_names_the_chosen_version(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    route = {"name": "api", "service": "api", "rules": GRAY_RULES, "split": split(v1=50, v2=50)}
    proxy = graylane(
        config({"api": service(v1, v2)}, [route], observability={"version_header": "X-Graylane-Version"})
    )
    assert get(proxy, "/", {"X-Canary": "always"}).get_all("X-Graylane-Version") == ["v2"]
    chosen = Counter()
    for _ in range(40):
        resp = get(proxy)
        assert resp.get_all("X-Graylane-Version") == [resp.get("X-Backend-Version")]
        chosen[resp.get("X-Graylane-Version")] += 1
    assert set(chosen) == {"v1", "v2"}


def test_version_header_is_off_by_default(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    route = {"name": "api", "service": "api", "split": split(v1=50, v2=50)}
    proxy = graylane(config({"api": service(v1, v2)}, [route]))
    for _ in range(10):
        resp = get(proxy)
        assert resp.status == 200
        # graylane adds only the request id and its Via to what the backend answered.
        names = sorted(name.lower() for name, _ in resp.headers)
        assert names == ["content-length", "content-type", "via", "x-backend-version", "x-request-id"]
