"""``graylane demo``: two versions of a service, graylane in front, and the split live.

It starts two small backends (v1 and v2, each answering with its version), runs
graylane on conf/demo.yaml (90/10 split, gray users by X-User-ID, sticky by
X-User-ID), sends a light stream of requests from a few kinds of users, and prints
once per second what the backends actually received, so the split can be watched
while trying the curl lines it prints. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from proxy.testing.backend import Backend
from proxy.testing.process import GraylaneProcess, ProcessStartError

VERSION_HEADER = "X-Graylane-Version"
STICKY_USERS = [f"user_{n}" for n in range(200)]
GRAY_USERS = [f"user_gray_{n}" for n in range(5)]


def default_config() -> Path:
    """conf/demo.yaml of the current directory, else the one beside the package."""
    here = Path("conf/demo.yaml")
    if here.exists():
        return here
    return Path(__file__).resolve().parent.parent / "conf" / "demo.yaml"


class Traffic(threading.Thread):
    """A light, bounded stream of requests: anonymous, sticky and gray users.

    It also checks what graylane promises: gray users always get v2, and a sticky
    user never changes version while the weights stay.
    """

    def __init__(self, port: int, rate: float, deadline: float) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.port = port
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.deadline = deadline
        self.stop_event = threading.Event()
        self.sticky_seen: dict[str, str] = {}
        self.sticky_flips = 0
        self.gray_misses = 0
        self.errors = 0
        self.random = random.Random(7)

    def run(self) -> None:
        if self.interval == 0.0:
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        while not self.stop_event.wait(self.interval) and time.monotonic() < self.deadline:
            kind = self.random.random()
            headers = {}
            user = None
            if kind < 0.02:
                user = self.random.choice(GRAY_USERS)
            elif kind < 0.45:
                user = self.random.choice(STICKY_USERS)
            if user is not None:
                headers["X-User-ID"] = user
            try:
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                continue
            version = response.getheader(VERSION_HEADER, "?")
            if user is None:
                continue
            if user.startswith("user_gray_"):
                self.gray_misses += version != "v2"
            elif self.sticky_seen.setdefault(user, version) != version:
                self.sticky_flips += 1
        conn.close()


def _start_backends(v1_port: int, v2_port: int) -> tuple[Backend, Backend]:
    started = []
    try:
        for name, port in (("v1", v1_port), ("v2", v2_port)):
            backend = Backend(name, port=port)
            backend.start()
            started.append(backend)
    except OSError as exc:
        for backend in started:
            backend.stop()
        where = f"127.0.0.1:{port}"
        raise SystemExit(f"graylane demo: cannot start the {name} backend on {where}: {exc}") from None
    return started[0], started[1]


def _split_line(elapsed: float, last: Counter, total: Counter, traffic: Traffic) -> str:
    def share(counter: Counter, version: str) -> str:
        count = sum(counter.values())
        return f"{100.0 * counter[version] / count:5.1f}%" if count else "    -"

    return (
        f"[{elapsed:4.0f}s] last second: v1 {last['v1']:3d} v2 {last['v2']:3d} | "
        f"since start: v1 {share(total, 'v1')}  v2 {share(total, 'v2')} of {sum(total.values())} | "
        f"gray users off v2: {traffic.gray_misses}  sticky flips: {traffic.sticky_flips}"
    )


def run_demo(config: str | None = None, rate: float = 20.0, duration: float = 600.0) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; returns the exit code."""
    config_path = (Path(config) if config else default_config()).resolve()
    if not config_path.exists():
        print(f"graylane demo: config {config_path} not found", file=sys.stderr)
        return 2
    port = int(os.environ.get("GRAYLANE_DEMO_PORT", "8080"))
    v1_port = int(os.environ.get("GRAYLANE_DEMO_V1_PORT", "9101"))
    v2_port = int(os.environ.get("GRAYLANE_DEMO_V2_PORT", "9102"))
    v1, v2 = _start_backends(v1_port, v2_port)
    proxy = GraylaneProcess(config_path, start_timeout=20)
    try:
        proxy.start()
    except ProcessStartError as exc:
        v1.stop()
        v2.stop()
        print(f"graylane demo: graylane did not start:\n{exc}", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port}"
    print(
        f"graylane is serving {url} with {config_path}:\n"
        "  v1 90% / v2 10%, gray users -> v2, sticky by X-User-ID\n"
        "Try:\n"
        f"  curl -i {url}/                                   # 90% v1, 10% v2 (see {VERSION_HEADER})\n"
        f"  curl -i -H 'X-User-ID: user_gray_42' {url}/      # a gray user: always v2\n"
        f"  curl -i -H 'X-User-ID: alice' {url}/             # sticky: alice keeps her version\n"
        "Ctrl-C stops the demo.\n",
        flush=True,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    traffic = Traffic(port, rate, started + duration)
    traffic.start()
    total: Counter = Counter()
    seen = {"v1": 0, "v2": 0}
    try:
        while not stop.wait(1.0) and time.monotonic() - started < duration and proxy.running:
            last: Counter = Counter()
            for name, backend in (("v1", v1), ("v2", v2)):
                count = len(backend.requests)
                last[name] = count - seen[name]
                seen[name] = count
            total.update(last)
            print(_split_line(time.monotonic() - started, last, total, traffic), flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        traffic.stop_event.set()
        traffic.join(timeout=5)
        code = proxy.stop()
        v1.stop()
        v2.stop()
    print(f"demo stopped; graylane exited with {code}")
    return 0
