"""Active health checks: ``GET path`` to every endpoint every ``interval``, off the request path.

Theory of operation
-------------------
One ``EndpointChecker`` task per endpoint. A probe opens a connection, sends one
``GET`` with ``Connection: close`` and reads the status line; it passes when the
status is one of ``expected_statuses`` within ``timeout``. A refused or reset
connection, a timeout or an unreadable answer fails it.

Endpoints start healthy (a restart must not take traffic away until the first
probes are in) and the first probe runs at once. ``unhealthy_threshold`` failures in
a row make an endpoint unhealthy, ``healthy_threshold`` passes in a row healthy
again; each change calls ``on_change(key, healthy, detail)``. ``observe`` holds that
rule as a pure step, so it is tested without sockets.

``ActiveChecks.sync(targets)`` keeps exactly one checker per wanted endpoint: new
ones start, gone ones stop, and an endpoint whose settings changed starts over.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import NamedTuple

from proxy.config.schema import HealthCheck

log = logging.getLogger("graylane")

EndpointKey = tuple[str, str, str]  # (service, version, address)
HealthCallback = Callable[[EndpointKey, bool, str], None]
MAX_HEAD = 8 * 1024
USER_AGENT = "graylane-health"


class Target(NamedTuple):
    """What to probe: the endpoint's socket address and the service's settings."""

    host: str
    port: int
    spec: HealthCheck


class Probe(NamedTuple):
    ok: bool
    detail: str  # "200", "connection refused", "timed out" ...


async def probe(host: str, port: int, spec: HealthCheck) -> Probe:
    """One health request; never raises for network trouble (it is the answer)."""
    authority = spec.host or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    request = (
        f"GET {spec.path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    writer = None
    try:
        async with asyncio.timeout(spec.timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return Probe(False, f"timed out after {spec.timeout:g}s")
    except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
        return Probe(False, _failure(exc))
    finally:
        if writer is not None:
            writer.close()
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or not code.isdigit():
        return Probe(False, "no HTTP response" if not line else f"not an HTTP response: {line[:40]!r}")
    status = int(code)
    return Probe(status in spec.expected_statuses, str(status))


def _failure(exc: Exception) -> str:
    """ "Connection refused" rather than asyncio's "Connect call failed ('127.0.0.1', 8080)"."""
    errno = getattr(exc, "errno", None)
    if errno:
        return os.strerror(errno)
    return str(exc) or type(exc).__name__


class Verdicts:
    """Passes or failures in a row, and whether they made the endpoint (un)healthy."""

    __slots__ = ("healthy", "passes", "failures", "detail")

    def __init__(self) -> None:
        self.healthy = True
        self.passes = 0
        self.failures = 0
        self.detail = "not checked yet"

    def observe(self, result: Probe, spec: HealthCheck) -> bool:
        """Count one probe; True when it changed ``healthy``."""
        self.detail = result.detail
        if result.ok:
            self.passes += 1
            self.failures = 0
            if not self.healthy and self.passes >= spec.healthy_threshold:
                self.healthy = True
                return True
        else:
            self.failures += 1
            self.passes = 0
            if self.healthy and self.failures >= spec.unhealthy_threshold:
                self.healthy = False
                return True
        return False


class EndpointChecker:
    def __init__(self, key: EndpointKey, target: Target, on_change: HealthCallback) -> None:
        self.key = key
        self.target = target
        self.on_change = on_change
        self.verdicts = Verdicts()
        self.probes = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"health {self.key[2]}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        target = self.target
        spec = target.spec
        while True:  # ends when cancelled
            result = await probe(target.host, target.port, spec)
            self.probes += 1
            if self.verdicts.observe(result, spec):
                state = "healthy" if self.verdicts.healthy else "unhealthy"
                log.warning("%s/%s endpoint %s is %s (%s)", *self.key, state, result.detail)
                self.on_change(self.key, self.verdicts.healthy, result.detail)
            await asyncio.sleep(spec.interval)


class ActiveChecks:
    """One checker per endpoint that wants checking."""

    def __init__(self, on_change: HealthCallback) -> None:
        self.on_change = on_change
        self.checkers: dict[EndpointKey, EndpointChecker] = {}

    def sync(self, targets: Mapping[EndpointKey, Target]) -> None:
        """Check exactly ``targets`` from now on (needs a running loop when there are any)."""
        for key in list(self.checkers):
            checker = self.checkers[key]
            if targets.get(key) != checker.target:
                checker.stop()
                del self.checkers[key]
                if not checker.verdicts.healthy:
                    self.on_change(key, True, "no longer checked")
        for key, target in targets.items():
            if key not in self.checkers:
                checker = EndpointChecker(key, target, self.on_change)
                self.checkers[key] = checker
                checker.start()

    def healthy(self, key: EndpointKey) -> bool:
        checker = self.checkers.get(key)
        return checker is None or checker.verdicts.healthy

    def detail(self, key: EndpointKey) -> str | None:
        checker = self.checkers.get(key)
        return None if checker is None else checker.verdicts.detail

    def close(self) -> None:
        for checker in self.checkers.values():
            checker.stop()
        self.checkers.clear()
