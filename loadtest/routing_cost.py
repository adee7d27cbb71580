"""Micro-benchmark of ``RouteTable.decide``: ns per call on a plain and on a canary config.

    taskset -c 1 .venv/bin/python -m loadtest.routing_cost [--repeat 7] [--form both|compiled|pure]

- plain: one route (prefix "/"), one service with one version and one endpoint;
- canary: a content rule (X-User-ID matching ``^user_gray_\\d+$`` goes to v2), then a 90/10 split
  sticky on X-User-ID; the requests carry ``X-User-ID: user_<n>`` for 1,000 different n.

Requests come from the real head parser (``load("http1").parse_request_head``). Each figure is
the best of several rounds of timeit (a loop over the prepared requests, its own cost included:
~10 ns). The routing twins are chosen once per process, so ``--form both`` (the default) runs
each form in a child process (the pure one with ``GRAYLANE_NO_EXTENSIONS=1``) and says which
form every twin resolved to: a stale extension silently runs the pure twin.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

USERS = 1_000
CLIENT_IP = "10.1.2.3"

PLAIN = {
    "services": {"api": {"versions": {"v1": {"endpoints": ["10.0.1.1:8080"]}}}},
    "routes": [{"name": "all", "service": "api", "match": {"path": {"prefix": "/"}}}],
}

CANARY = {
    "services": {
        "shop": {
            "versions": {
                "v1": {"endpoints": ["10.0.1.1:8080", "10.0.1.2:8080"]},
                "v2": {"endpoints": ["10.0.2.1:8080"]},
            }
        }
    },
    "routes": [
        {
            "name": "shop",
            "service": "shop",
            "rules": [{"match": {"headers": {"X-User-ID": {"regex": r"^user_gray_\d+$"}}}, "version": "v2"}],
            "split": [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}],
            "sticky": {"header": "X-User-ID"},
        }
    ],
}


def table_of(doc: dict):  # -> RouteTable (imported late: the form is chosen by the environment)
    from proxy.config.schema import Config
    from proxy.routing import RouteTable

    data = {"version": 1, "listeners": [{"address": "127.0.0.1:0"}], **doc}
    return RouteTable(msgspec.convert(data, Config), seed=1)


def head(user: int | None) -> bytes:
    lines = [b"GET /api/v1/items HTTP/1.1", b"Host: shop.example.com", b"User-Agent: wrk/4.2", b"Accept: */*"]
    if user is not None:
        lines.append(b"X-User-ID: user_%d" % user)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def cases() -> list[tuple[str, Callable[[], object], int]]:
    """(title, call, decisions per call)."""
    from proxy._fast import load

    parse = load("http1").parse_request_head
    plain = table_of(PLAIN)
    canary = table_of(CANARY)
    one = parse(head(None), 8192, 100)
    users = [parse(head(n), 8192, 100) for n in range(USERS)]
    assert plain.decide(one, CLIENT_IP).route_name == "all"
    assert {canary.decide(req, CLIENT_IP).version_name for req in users} == {"v1", "v2"}

    def run_plain(decide=plain.decide, reqs=[one] * USERS, ip=CLIENT_IP) -> None:
        for req in reqs:
            decide(req, ip)

    def run_canary(decide=canary.decide, reqs=users, ip=CLIENT_IP) -> None:
        for req in reqs:
            decide(req, ip)

    return [
        ("plain: one route, one endpoint", run_plain, USERS),
        ("canary: rule + sticky 90/10", run_canary, USERS),
    ]


def ns_per_decision(call: Callable[[], object], per_call: int, repeat: int) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / (number * per_call) * 1e9


def measure(repeat: int) -> None:
    from proxy._fast import COMPILED, NO_EXTENSIONS, load

    for name in ("http1", "hashing", "matching", "routing"):
        try:
            load(name)
        except (AttributeError, ModuleNotFoundError):
            pass  # no such twin (before the routing twin existed)
    form = "pure" if NO_EXTENSIONS else "compiled"
    for title, call, per_call in cases():
        print(f"{form:9} {title:34} {ns_per_decision(call, per_call, repeat):7,.0f} ns")
    forms = ", ".join(f"{name}={'compiled' if on else 'pure'}" for name, on in sorted(COMPILED.items()))
    print(f"          ({forms})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timing rounds per case (best is kept)")
    parser.add_argument("--form", choices=["both", "compiled", "pure"], default="both")
    args = parser.parse_args(argv)
    if args.form != "both":
        if args.form == "pure":
            os.environ["GRAYLANE_NO_EXTENSIONS"] = "1"
        measure(args.repeat)
        return
    for form in ("compiled", "pure"):
        argv = [sys.executable, "-m", "loadtest.routing_cost", "--form", form, "--repeat", str(args.repeat)]
        subprocess.run(argv, check=True, cwd=Path(__file__).resolve().parents[1])


if __name__ == "__main__":
    main()
