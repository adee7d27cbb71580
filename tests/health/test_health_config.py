"""The health and outlier settings of a service: schema and cross-field checks."""

from __future__ import annotations

import pytest

from proxy.config.convert import convert
from proxy.config.schema import Config


def problems(**service_extra) -> list[str]:
    from proxy.config.validate import validate

    data = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {"shop": {"versions": {"v1": {"endpoints": ["127.0.0.1:1"]}}, **service_extra}},
    }
    config, found = convert(data, Config)
    if config is None:
        return [f"{p.path}: {p.message}" for p in found]
    return validate(config)


def test_defaults_are_valid():
    assert problems(health={}, outlier={}) == []


def test_defaults_are_sensible():
    config, _ = convert(
        {
            "version": 1,
            "listeners": [{"address": "127.0.0.1:0"}],
            "services": {"s": {"versions": {"v": {}}, "health": {}, "outlier": {}}},
        },
        Config,
    )
    assert config is not None
    health, outlier = config.services["s"].health, config.services["s"].outlier
    assert (health.path, health.interval, health.timeout, health.expected_statuses) == (
        "/healthz",
        5.0,
        2.0,
        [200],
    )
    assert (outlier.consecutive_errors, outlier.base_ejection_time, outlier.max_ejection_percent) == (
        5,
        30.0,
        50.0,
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"health": {"path": "healthz"}}, "services.shop.health.path: 'healthz' is not a request path"),
        ({"health": {"path": "/a b"}}, "services.shop.health.path: '/a b' is not a request path"),
        ({"health": {"interval": 0}}, "services.shop.health.interval: must be > 0"),
        ({"health": {"timeout": "0s"}}, "services.shop.health.timeout: must be > 0"),
        ({"health": {"expected_statuses": []}}, "services.shop.health.expected_statuses: name at least one"),
        ({"health": {"expected_statuses": [200, 700]}}, "expected_statuses[1]: 700 is not an HTTP status"),
        ({"health": {"healthy_threshold": 0}}, "services.shop.health.healthy_threshold: must be >= 1"),
        ({"health": {"unhealthy_threshold": 0}}, "services.shop.health.unhealthy_threshold: must be >= 1"),
        ({"health": {"host": ""}}, "services.shop.health.host: '' is not a usable Host header"),
        ({"health": {"pth": "/x"}}, "unknown field (did you mean 'path'?)"),
        ({"outlier": {"consecutive_errors": 0}}, "services.shop.outlier.consecutive_errors: must be >= 1"),
        ({"outlier": {"base_ejection_time": 0}}, "services.shop.outlier.base_ejection_time: must be > 0"),
        (
            {"outlier": {"base_ejection_time": "1m", "max_ejection_time": "30s"}},
            "services.shop.outlier.max_ejection_time: must be >= base_ejection_time",
        ),
        (
            {"outlier": {"max_ejection_percent": 101}},
            "services.shop.outlier.max_ejection_percent: must be from 0",
        ),
    ],
)
def test_problems(settings, expected):
    found = problems(**settings)
    assert any(expected in problem for problem in found), found
