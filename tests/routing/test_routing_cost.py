"""The cost of ``decide()`` per request, measured and reported (not asserted: machines differ).

Run with ``-s`` or look for the "decide() cost" lines in the output.
"""

from __future__ import annotations

import timeit

from proxy._fast import COMPILED, load
from proxy.routing import RouteTable

HEADERS = [
    (b"user-agent", b"wrk/4.2"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip"),
    (b"x-user-id", b"user_12345"),
    (b"x-request-id", b"0af7651916cd43dd"),
]


def typical_table(make_config) -> RouteTable:
    """20 other prefix routes, then the gray route: a host, a prefix and a 90/10 split sticky on X-User-ID."""
    services = {
        "shop": {
            "versions": {
                "v1": {"endpoints": ["10.0.1.1:8080", "10.0.1.2:8080"]},
                "v2": {"endpoints": ["10.0.2.1:8080"]},
            }
        },
        "other": {"versions": {"v1": {"endpoints": ["10.0.9.1:8080"]}}},
    }
    routes = [
        {"name": f"svc{i}", "service": "other", "match": {"path": {"prefix": f"/svc{i}"}}} for i in range(20)
    ]
    routes.append(
        {
            "name": "shop",
            "service": "shop",
            "match": {"host": ["shop.example.com"], "path": {"prefix": "/api"}},
            "split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
            "sticky": {"header": "X-User-ID"},
        }
    )
    return RouteTable(make_config(routes, services=services))


def test_decide_cost(make_config, make_request, capsys):
    table = typical_table(make_config)
    cases = {
        "90/10 sticky split, key present": make_request(
            b"/api/v1/items", host=b"shop.example.com", headers=HEADERS
        ),
        "90/10 sticky split, no key": make_request(
            b"/api/v1/items", host=b"shop.example.com", headers=HEADERS[:3]
        ),
        "prefix route, one version": make_request(b"/svc7/items", headers=HEADERS),
    }
    assert table.decide(cases["90/10 sticky split, key present"], "10.1.2.3").sticky_hash >= 0
    assert table.decide(cases["prefix route, one version"], "10.1.2.3").route_name == "svc7"
    number = 50_000
    lines = []
    for label, req in cases.items():
        best = min(timeit.repeat(lambda req=req: table.decide(req, "10.1.2.3"), number=number, repeat=5))
        lines.append(f"decide() cost: {best / number * 1e9:6.0f} ns  {label}")
    load("hashing")
    load("matching")
    forms = ", ".join(f"{name}={'compiled' if on else 'pure'}" for name, on in sorted(COMPILED.items()))
    with capsys.disabled():
        print("\n" + "\n".join(lines) + f"\n({forms})")
