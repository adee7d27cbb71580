"""Endpoint health for one server process: active checks, outlier ejection, the groups they edit.

The server makes one ``HealthMonitor``, calls ``attach(table)`` for every route table it
compiles (before requests can see it), ``start()`` on its event loop, ``record(endpoint,
ok)`` after every upstream attempt, and ``close()`` when stopping. ``status()`` is what
/status shows per endpoint. Services without ``health`` / ``outlier`` settings cost
nothing but one dict lookup per failed request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from proxy.health.active import ActiveChecks, EndpointKey, Target
from proxy.health.outlier import OutlierDetector
from proxy.health.state import EndpointHealth

MAX_SLEEP = 1.0

# (endpoint, "health" | "ejection", the new value: healthy / ejected)
Listener = Callable[[EndpointKey, str, bool], None]


class HealthMonitor:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.health = EndpointHealth()
        self.outlier = OutlierDetector(clock, self._ejection_changed)
        self.active = ActiveChecks(self._health_changed)
        # The data plane's call: bound once, no extra frame per request.
        self.record = self.outlier.record
        self.failing = self.outlier.failing  # the same dict, never replaced: see record's callers
        self._targets: dict[EndpointKey, Target] = {}
        self._started = False
        self._wake: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.changes = 0  # endpoint state changes, for metrics
        self.listeners: list[Listener] = []  # told of every change (logs, metrics, tests)

    def attach(self, table: Any) -> None:
        """A new route table: apply the marks to its groups and check its endpoints."""
        self.health.attach(table)
        services = table.config.services
        endpoints = dict(self.health.all_keys())
        settings = {name: s.outlier for name, s in services.items() if s.outlier is not None}
        self.outlier.configure(settings, endpoints)
        self._targets = {}
        for key, endpoint in endpoints.items():
            spec = services[key[0]].health
            if spec is not None:
                self._targets[key] = Target(endpoint.host, endpoint.port, spec)
        if self._started:
            self.active.sync(self._targets)

    def start(self) -> None:
        """Begin checking (call from a coroutine on the server's loop)."""
        if self._started:
            return
        self._started = True
        self._wake = asyncio.Event()
        self.active.sync(self._targets)
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_forever(), name="graylane-outliers"
        )

    def close(self) -> None:
        self.active.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._started = False

    # --- callbacks ------------------------------------------------------------------------

    def _health_changed(self, key: EndpointKey, healthy: bool, detail: str) -> None:
        self.changes += 1
        self.health.set_healthy(key, healthy, detail)
        self._tell(key, "health", healthy)

    def _ejection_changed(self, key: EndpointKey, ejected: bool) -> None:
        self.changes += 1
        self.health.set_ejected(key, ejected)
        if ejected and self._wake is not None:
            self._wake.set()  # the sweeper may have to wake up sooner
        self._tell(key, "ejection", ejected)

    def _tell(self, key: EndpointKey, kind: str, value: bool) -> None:
        for listener in list(self.listeners):
            listener(key, kind, value)

    async def _sweep_forever(self) -> None:
        assert self._wake is not None
        while True:  # ends when cancelled
            self._wake.clear()
            expiry = self.outlier.next_expiry()
            delay = MAX_SLEEP if expiry is None else min(MAX_SLEEP, max(0.001, expiry - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self.outlier.sweep(self.clock())

    # --- /status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per service and version: serving or not, where its share goes, each endpoint's marks."""
        now = self.clock()
        services: dict[str, dict[str, Any]] = {}
        for service, version in self.health.endpoint_counts():
            described = self.health.describe(service, version)
            for endpoint in described["endpoints"]:
                key = (service, version, endpoint["address"])
                endpoint["ejection"] = self.outlier.describe(key, now)
                endpoint["last_probe"] = self.active.detail(key)
            services.setdefault(service, {})[version] = described
        return {
            "services": services,
            "ejections": self.outlier.ejections,
            "ejections_skipped": self.outlier.skipped,
            "changes": self.changes,
        }
