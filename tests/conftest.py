"""Fixtures shared by every graylane test: backends, the proxy as a process, ports.

When a test fails, the output of every graylane process it started and the
requests each backend received are attached to the failure report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from proxy.testing import Backend, GraylaneProcess, RawClient
from proxy.testing import free_port as _free_port

# CI time matters: a moderate number of examples, and no per-example deadline
# (a loaded CI machine makes deadlines flaky). GRAYLANE_HYPOTHESIS_PROFILE=thorough
# (or pytest --hypothesis-profile=thorough) for a deeper run.
settings.register_profile(
    "graylane", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("GRAYLANE_HYPOTHESIS_PROFILE", "graylane"))

_STARTED = pytest.StashKey[list[Any]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call" and report.failed:
        for thing in item.stash.get(_STARTED, []):
            if isinstance(thing, GraylaneProcess):
                label = f"pid {thing._popen.pid}" if thing._popen is not None else "not started"
                report.sections.append((f"graylane stderr ({label})", "\n".join(thing.logs())))
                stdout = thing.logs("stdout")
                if stdout:
                    report.sections.append((f"graylane stdout ({label}, last 200)", "\n".join(stdout[-200:])))
            elif isinstance(thing, Backend):
                seen = [f"#{r.connection_id} {r.method} {r.target}" for r in thing.requests[-100:]]
                report.sections.append((f"backend {thing.name} requests (last 100)", "\n".join(seen)))
    return report


def _remember(request: pytest.FixtureRequest, thing: Any) -> None:
    request.node.stash.setdefault(_STARTED, []).append(thing)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Callable[..., Backend]]:
    """Factory: ``backend(name="v1", **opts)`` -> a started Backend, stopped after the test."""
    started: list[Backend] = []

    def make(name: str = "v1", **opts: Any) -> Backend:
        server = Backend(name, **opts)
        server.start()
        started.append(server)
        _remember(request, server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def graylane(request: pytest.FixtureRequest) -> Iterator[Callable[..., GraylaneProcess]]:
    """Factory: ``graylane(config_text, **opts)`` -> a GraylaneProcess listening, stopped after the test."""
    started: list[GraylaneProcess] = []

    def make(
        config: str | os.PathLike[str], env: dict[str, str | None] | None = None, **opts: Any
    ) -> GraylaneProcess:
        proc = GraylaneProcess(config, env, **opts)
        started.append(proc)  # before start(): stop() also cleans up after a failed start
        _remember(request, proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    """Factory: ``raw_client(host, port, timeout=10.0)`` -> a connected RawClient, closed after the test."""
    clients: list[RawClient] = []

    def connect(host: str, port: int, timeout: float = 10.0, **opts: Any) -> RawClient:
        client = RawClient(host, port, timeout, **opts)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()
