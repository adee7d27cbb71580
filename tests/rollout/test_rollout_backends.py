"""The controller steering a real route table in front of real backends on 127.0.0.1.

The requests are sent the way the data plane sends them: ``RouteTable.decide`` picks
the version and endpoint, the answer is counted in ``RequestCounters`` under the
target's slot, and every ``on_weights`` call compiles a new table from
``apply_weights`` (the wiring the server does).
"""

from __future__ import annotations

import asyncio

import pytest
from rollout_support import ROUTE, request_head

from proxy.config.convert import convert
from proxy.config.schema import Config
from proxy.observe.counters import RequestCounters
from proxy.rollout.controller import RolloutController
from proxy.rollout.overrides import apply_weights
from proxy.routing.table import RouteTable

pytestmark = pytest.mark.integration

REQUEST = b"GET /status/200 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"


def config_for(tmp_path, v1: str, v2: str, steps: list[dict]) -> Config:
    data = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            "shop": {"stable": "v1", "versions": {"v1": {"endpoints": [v1]}, "v2": {"endpoints": [v2]}}}
        },
        "routes": [
            {
                "name": ROUTE,
                "service": "shop",
                "rollout": {
                    "canary": "v2",
                    "steps": steps,
                    "analysis": {
                        "interval": "100ms",
                        "min_requests": 5,
                        "max_error_rate": 0.05,
                        "failure_limit": 3,
                    },
                },
            }
        ],
        "rollouts": {"state_dir": str(tmp_path)},
    }
    config, problems = convert(data, Config)
    assert config is not None, problems
    return config


class MiniProxy:
    """Route table + counters, swapped on every weight change, as the server keeps them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.counters = RequestCounters()
        self.table: RouteTable | None = None
        self.sent: dict[str, int] = {}

    def install(self, weights: dict[str, dict[str, int]]) -> None:
        table = RouteTable(apply_weights(self.config, weights))
        self.counters.assign(table.targets)
        self.table = table

    async def request(self, loop: asyncio.AbstractEventLoop) -> int:
        assert self.table is not None
        decision = self.table.decide(request_head(b"/status/200"), "127.0.0.1")
        started = loop.time()
        endpoint = decision.endpoint
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.write(REQUEST)
        status = int((await reader.readline()).split()[1])
        writer.close()
        self.counters.record(decision.target.stats_slot, status, loop.time() - started, 0, 0)
        self.sent[decision.version_name] = self.sent.get(decision.version_name, 0) + 1
        return status


async def drive(proxy: MiniProxy, controller: RolloutController, until: set[str], limit: int = 3000) -> str:
    """Send requests one after another until the rollout reaches a phase in ``until``."""
    loop = asyncio.get_running_loop()
    reached = asyncio.get_running_loop().create_future()

    def heard(route: str, change) -> None:
        if change.after in until and not reached.done():
            reached.set_result(change.after)

    controller.listeners.append(heard)
    controller.start()
    for _ in range(limit):  # bounded; a healthy run needs a few hundred
        if reached.done():
            break
        await proxy.request(loop)
    return await asyncio.wait_for(reached, 5)


def test_a_canary_answering_20_percent_500s_is_rolled_back_and_gets_no_more_traffic(tmp_path, backend):
    stable, canary = backend("v1"), backend("v2", fail_rate=0.2)
    config = config_for(tmp_path, stable.endpoint, canary.endpoint, [{"set_weight": 50}, {"set_weight": 100}])

    async def scenario():
        loop = asyncio.get_running_loop()
        proxy = MiniProxy(config)
        controller = RolloutController(config, proxy.counters, proxy.install, clock=loop.time)
        proxy.install(controller.weights())
        try:
            phase = await drive(proxy, controller, {"aborted", "promoted"})
            canary_before = len(canary.requests)
            statuses = [await proxy.request(loop) for _ in range(100)]
            return phase, controller.status()["rollouts"][ROUTE], controller.checks, canary_before, statuses
        finally:
            await controller.stop()

    phase, status, checks, canary_before, statuses = asyncio.run(scenario())
    assert phase == "aborted"
    assert (status["weight"], status["failures"]) == (0, 3)
    assert checks.get((ROUTE, "fail")) == 3
    assert "error rate" in status["reason"]
    assert len(canary.requests) == canary_before  # no further canary traffic
    assert set(statuses) == {200}


def test_a_clean_canary_is_promoted_to_all_the_traffic(tmp_path, backend):
    stable, canary = backend("v1"), backend("v2")
    steps = [{"set_weight": 5}, {"set_weight": 25}, {"set_weight": 50}, {"set_weight": 100}]
    config = config_for(tmp_path, stable.endpoint, canary.endpoint, steps)

    async def scenario():
        loop = asyncio.get_running_loop()
        proxy = MiniProxy(config)
        controller = RolloutController(config, proxy.counters, proxy.install, clock=loop.time)
        proxy.install(controller.weights())
        try:
            phase = await drive(proxy, controller, {"aborted", "promoted"})
            proxy.sent.clear()
            for _ in range(50):
                await proxy.request(loop)
            return phase, dict(proxy.sent)
        finally:
            await controller.stop()

    phase, sent = asyncio.run(scenario())
    assert phase == "promoted"
    assert sent == {"v2": 50}
