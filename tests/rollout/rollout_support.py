"""Builders for rollout tests: configs, a hand-driven clock, traffic written into real counters."""

from __future__ import annotations

from typing import Any

from proxy.config.convert import convert
from proxy.config.schema import Config
from proxy.config.validate import validate
from proxy.http.request import RequestHead
from proxy.observe.counters import RequestCounters, Snapshot
from proxy.testing.heads import request_head as _parsed_head

ROUTE = "shop"
SERVICE = "shop"

GOOD_LATENCY = 0.004  # in the (0.0025, 0.005] bucket
SLOW_LATENCY = 0.8  # in the (0.5, 1.0] bucket


def rollout_config(
    state_dir: Any,
    *,
    steps: list[dict[str, Any]] | None = None,
    analysis: dict[str, Any] | None = None,
    webhooks: list[dict[str, Any]] | None = None,
    canary: str = "v2",
    split: list[dict[str, Any]] | None = None,
    **route_extra: Any,
) -> Config:
    """A valid config: service shop (v1 stable, v2, v3), route shop with a rollout of ``canary``."""
    rollout: dict[str, Any] = {
        "canary": canary,
        "steps": steps if steps is not None else [{"set_weight": 5}, {"set_weight": 25}, {"set_weight": 100}],
    }
    if analysis is not None:
        rollout["analysis"] = analysis
    route: dict[str, Any] = {"name": ROUTE, "service": SERVICE, "rollout": rollout, **route_extra}
    if split is not None:
        route["split"] = split
    data = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            SERVICE: {
                "stable": "v1",
                "versions": {
                    "v1": {"endpoints": ["127.0.0.1:9101"]},
                    "v2": {"endpoints": ["127.0.0.1:9102"]},
                    "v3": {"endpoints": ["127.0.0.1:9103"]},
                },
            }
        },
        "routes": [route],
        "rollouts": {"state_dir": str(state_dir), "webhooks": webhooks or []},
    }
    config, problems = convert(data, Config)
    assert config is not None, problems
    assert validate(config) == []
    return config


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Traffic:
    """Requests "served" by writing them into real ``RequestCounters`` (the controller's source)."""

    def __init__(self) -> None:
        self.counters = RequestCounters()

    def snapshot(self, at: float = 0.0) -> Snapshot:
        return self.counters.snapshot(at)

    def serve(
        self,
        version: str,
        requests: int,
        *,
        errors: int = 0,
        latency: float = GOOD_LATENCY,
        route: str = ROUTE,
    ) -> None:
        slot = self.counters.slot(route, SERVICE, version)
        for i in range(requests):
            self.counters.record(slot, 500 if i < errors else 200, latency, 0, 0)

    def split(self, weight: int, total: int, *, canary: str = "v2", error_ratio: float = 0.0) -> None:
        """``total`` requests shared by the canary's ``weight`` percent; the canary fails ``error_ratio``."""
        mine = total * weight // 100
        self.serve(canary, mine, errors=round(mine * error_ratio))
        self.serve("v1", total - mine)


class WeightLog:
    """The ``on_weights`` callback: keeps every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, dict[str, int]]] = []

    def __call__(self, weights: dict[str, dict[str, int]]) -> None:
        self.calls.append(weights)

    def canary_percents(self, canary: str = "v2") -> list[int]:
        """The canary's percent in each call."""
        out = []
        for weights in self.calls:
            split = weights[ROUTE]
            out.append(round(100 * split[canary] / sum(split.values())))
        return out


def request_head(path: bytes = b"/") -> RequestHead:
    """A GET of ``path`` to shop.test, as the head parser gives it to ``RouteTable.decide``."""
    return _parsed_head(path)
