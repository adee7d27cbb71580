"""Builders for health tests: configs with health/outlier settings, a request head for ``decide``."""

from __future__ import annotations

from typing import Any

from proxy.config.convert import convert
from proxy.config.schema import Config
from proxy.config.validate import validate
from proxy.http.request import RequestHead
from proxy.testing.heads import request_head


def health_config(
    versions: dict[str, list[str]],
    *,
    health: dict[str, Any] | None = None,
    outlier: dict[str, Any] | None = None,
    split: list[dict[str, Any]] | None = None,
    on_empty_version: str = "stable",
) -> Config:
    """Service shop (the first version is stable) and one route ``shop`` over it."""
    service: dict[str, Any] = {
        "versions": {name: {"endpoints": endpoints} for name, endpoints in versions.items()},
        "on_empty_version": on_empty_version,
    }
    if health is not None:
        service["health"] = health
    if outlier is not None:
        service["outlier"] = outlier
    route: dict[str, Any] = {"name": "shop", "service": "shop"}
    if split is not None:
        route["split"] = split
    data = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {"shop": service},
        "routes": [route],
    }
    config, problems = convert(data, Config)
    assert config is not None, problems
    assert validate(config) == []
    return config


def get(path: bytes = b"/") -> RequestHead:
    """A GET of ``path`` to shop.test, as the head parser gives it to ``RouteTable.decide``."""
    return request_head(path)
