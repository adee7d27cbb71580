"""What observability costs graylane: requests per second with the access log written to a
file (and the per-request counters, always on) against the access log switched off.

    .venv/bin/python loadtest/observe_cost.py [--runs 3] [--duration 8] [--connections 32]

nginx (``return 200 "ok"``, one worker) is the origin, so the origin is never the bottleneck;
``wrk -t1 -cN -dS`` drives one graylane process per variant. Runs are interleaved (A B A B ...)
so that a drift of the machine hits both variants alike, and each variant gets a short warm-up
first. graylane is pinned to one CPU, nginx and wrk share the other (with fewer than two CPUs
nothing is pinned); the table shows how busy graylane's CPU was, to tell a saturated proxy
from a starved one, and graylane's CPU time per request, which stays comparable when other
work on the machine takes CPU from graylane. Every process started here is stopped by its PID. Everything
talks over 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import graylane from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.testing import GraylaneProcess, free_port  # noqa: E402

STARTUP_DEADLINE = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_REQUESTS_PER_SEC = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")

NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok"; }}
    }}
}}
"""


def graylane_config(origin: str, access_log: dict[str, Any]) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {"api": {"versions": {"v1": {"endpoints": [origin]}}}},
        "routes": [{"name": "all", "service": "api"}],
        "access_log": access_log,
    }
    return json.dumps(doc, indent=1) + "\n"


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:  # nginx logs nothing when ready: try to connect, bounded
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on 127.0.0.1:{port} within {STARTUP_DEADLINE}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def run_wrk(url: str, connections: int, seconds: int, cpu: int | None) -> tuple[float, str]:
    argv = pinned(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url], cpu)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    out = result.stdout
    match = _REQUESTS_PER_SEC.search(out)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{out}\n{result.stderr}")
    problems = []
    if (bad := _NON_2XX.search(out)) is not None:
        problems.append(f"{bad.group(1)} non-2xx")
    if (errors := _SOCKET_ERRORS.search(out)) is not None and any(int(n) for n in errors.groups()):
        problems.append(errors.group(0))
    return float(match.group(1)), "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per variant (default 3)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per run (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per variant")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    args = parser.parse_args(argv)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"observe_cost: {tool} is not installed (scripts/install-system-deps.sh)", file=sys.stderr)
            return 1
    two_cpus = len(os.sched_getaffinity(0)) >= 2
    proxy_cpu, load_cpu = (1, 0) if two_cpus else (None, None)

    workdir = Path(tempfile.mkdtemp(prefix="graylane-observe-cost-"))
    nginx_port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=nginx_port))
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    nginx_argv = [nginx_bin, "-p", str(workdir), "-e", str(workdir / "nginx-error.log"), "-c", str(conf)]
    nginx = subprocess.Popen(
        pinned([*nginx_argv, "-g", "daemon off;"], load_cpu),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    access_log = workdir / "access.log"
    variants = {
        "access log to a file": {"path": str(access_log)},
        "access log off": {"enabled": False},
    }
    proxies: dict[str, GraylaneProcess] = {}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    busy: dict[str, list[float]] = {name: [] for name in variants}  # graylane's CPU use, percent
    cost: dict[str, list[float]] = {name: [] for name in variants}  # graylane CPU microseconds per request
    notes: list[str] = []
    try:
        wait_for_port(nginx_port, nginx)
        command = pinned([sys.executable, "-m", "proxy", "run", "-c", "{config}"], proxy_cpu)
        for name, section in variants.items():
            config = graylane_config(f"127.0.0.1:{nginx_port}", section)
            proxies[name] = GraylaneProcess(config, command=command).start()
        for proxy in proxies.values():
            run_wrk(f"http://127.0.0.1:{proxy.port}/", args.connections, args.warmup, load_cpu)
        for run in range(args.runs):
            for name, proxy in proxies.items():
                before = cpu_seconds(proxy.pid)
                started = time.monotonic()
                rate, problems = run_wrk(
                    f"http://127.0.0.1:{proxy.port}/", args.connections, args.duration, load_cpu
                )
                used = cpu_seconds(proxy.pid) - before
                busy[name].append(100.0 * used / (time.monotonic() - started))
                cost[name].append(1e6 * used / (rate * args.duration))
                rates[name].append(rate)
                if problems:
                    notes.append(f"run {run + 1}, {name}: {problems}")
                print(f"run {run + 1}/{args.runs}  {name:<22} {rate:>10,.0f} req/s", file=sys.stderr)
        logged = sum(1 for _ in access_log.open("rb")) if access_log.exists() else 0
    finally:
        for proxy in proxies.values():
            proxy.stop()
        stop(nginx)
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(args, rates, busy, cost, logged, pinned_cpus=proxy_cpu is not None)
    for note in notes:
        print(f"note: {note}")
    return 0


def print_table(
    args: argparse.Namespace,
    rates: dict[str, list[float]],
    busy: dict[str, list[float]],
    cost: dict[str, list[float]],
    logged: int,
    *,
    pinned_cpus: bool,
) -> None:
    """Throughput per run, and graylane's CPU time per request: the second does not depend on how
    much CPU graylane got, so it stays comparable on a busy machine."""
    runs = " ".join(f"{'run ' + str(i + 1):>8}" for i in range(args.runs))
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration:g}s, {args.runs} interleaved runs, origin nginx"
        f"{', graylane on its own CPU' if pinned_cpus else ''}\n"
    )
    print(f"{'variant':<21} {runs} {'median':>8}  {'CPU busy':>8}  {'CPU us/req':>10}")
    for name, values in rates.items():
        cells = " ".join(f"{value:>8,.0f}" for value in values)
        print(
            f"{name:<21} {cells} {statistics.median(values):>8,.0f}"
            f"  {statistics.mean(busy[name]):>7.0f}%  {statistics.median(cost[name]):>10.1f}"
        )
    (on, off) = (statistics.median(values) for values in rates.values())
    (cpu_on, cpu_off) = (statistics.median(values) for values in cost.values())
    print(f"\nreq/s with / without the access log:       {on / off:.3f}")
    print(f"CPU per request with / without the log:    {cpu_on / cpu_off:.3f}")
    print(f"access log lines written: {logged:,}")


if __name__ == "__main__":
    sys.exit(main())
