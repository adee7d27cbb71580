"""What JWT authentication (cached) and a local rate limit cost per request: wrk against graylane
with no policy, a cached JWT, a local limit, and both, interleaved, in front of one nginx origin.

    .venv/bin/python loadtest/policy_cost.py [--runs 3] [--duration 5]

graylane runs pinned to CPU1, wrk and nginx to CPU0. Every request carries the same valid
HS256 token, so after the first one the JWT check is a cache lookup; the limit is set so high
that nothing is refused, so what is measured is the cost of deciding.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.observe_cost import (
    _NON_2XX,
    _REQUESTS_PER_SEC,
    NGINX_CONF,
    cpu_seconds,
    pinned,
    stop,
    wait_for_port,
)  # noqa: E402
from proxy.testing import GraylaneProcess, free_port  # noqa: E402

SECRET = "a-bench-secret-that-is-long-enough-for-hs256!"
AUTH = {"jwt": {"algorithms": ["HS256"], "secret": SECRET, "forward_claims": {"sub": "X-User-ID"}}}
LIMIT = {"rate": 1e9, "burst": 1_000_000, "key": "client_ip"}
VARIANTS = {
    "off": {},
    "jwt (cached)": {"auth": AUTH},
    "local limit": {"rate_limits": [LIMIT]},
    "jwt + limit by sub": {"auth": AUTH, "rate_limits": [dict(LIMIT, key="claim:sub")]},
}


def config(origin: str, route: dict) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {"api": {"versions": {"v1": {"endpoints": [origin]}}}},
        "routes": [{"name": "all", "service": "api", **route}],
        "access_log": {"enabled": False},
    }
    return json.dumps(doc)


def wrk(url: str, seconds: int, token: str) -> tuple[float, str]:
    argv = pinned(["wrk", "-t1", "-c64", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url], 0)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    bad = _NON_2XX.search(out)
    return float(_REQUESTS_PER_SEC.search(out).group(1)), bad.group(1) if bad else "0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
    workdir = Path(tempfile.mkdtemp())
    port = free_port()
    (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, port=port))
    nginx_argv = [
        "nginx",
        "-p",
        str(workdir),
        "-e",
        str(workdir / "e.log"),
        "-c",
        str(workdir / "nginx.conf"),
    ]
    nginx = subprocess.Popen(
        pinned([*nginx_argv, "-g", "daemon off;"], 0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    procs: dict[str, GraylaneProcess] = {}
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    costs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        wait_for_port(port, nginx)
        command = pinned([sys.executable, "-m", "proxy", "run", "-c", "{config}"], 1)
        for name, route in VARIANTS.items():
            procs[name] = GraylaneProcess(config(f"127.0.0.1:{port}", route), command=command).start()
        for proc in procs.values():
            wrk(f"http://127.0.0.1:{proc.port}/", 1, token)  # warm-up
        for run in range(args.runs):
            for name, proc in procs.items():
                before = cpu_seconds(proc.pid)
                rate, bad = wrk(f"http://127.0.0.1:{proc.port}/", args.duration, token)
                used = cpu_seconds(proc.pid) - before
                rates[name].append(rate)
                costs[name].append(1e6 * used / (rate * args.duration))
                cost = costs[name][-1]
                print(f"run {run + 1}  {name:20s} {rate:9,.0f} req/s  {cost:5.1f} us/req  non-2xx {bad}")
    finally:
        for proc in procs.values():
            proc.stop()
        stop(nginx)
        shutil.rmtree(workdir, ignore_errors=True)
    base_rate = statistics.median(rates["off"])
    base_cost = statistics.median(costs["off"])
    print("\n| variant | req/s (median) | x off | CPU us/req | CPU x off |\n| --- | --- | --- | --- | --- |")
    for name in VARIANTS:
        rate, cost = statistics.median(rates[name]), statistics.median(costs[name])
        print(f"| {name} | {rate:,.0f} | {rate / base_rate:.3f} | {cost:.1f} | {cost / base_cost:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
