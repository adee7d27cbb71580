"""The documents the admin API serves, as pure functions of the running state.

``status_document`` answers "what is graylane doing right now": every route with
its versions, weights and endpoints, and per version the live request rate, error
rate and p50/p99 over the last minute, so the stable and the canary can be
compared at a glance. ``redacted_config`` is the effective config with secrets
replaced.
"""

from __future__ import annotations

from typing import Any

from proxy.config.dump import config_to_builtins
from proxy.config.schema import Config
from proxy.observe.window import WindowStats

SECRET_KEYS = frozenset(["token", "secret", "password", "key_data", "client_secret"])
REDACTED = "<redacted>"


def redacted_config(config: Config) -> dict[str, Any]:
    return _redact(config_to_builtins(config))


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_field(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _redact_field(key: str, value: Any) -> Any:
    if key in SECRET_KEYS and value is not None:
        return REDACTED
    if key.endswith("url") and isinstance(value, str):
        return redacted_url(value)
    return _redact(value)


def redacted_url(url: str) -> str:
    """``url`` with the password of its userinfo replaced (``redis://u:pw@h`` -> ``redis://u:<redacted>@h``)."""
    scheme, sep, rest = url.partition("://")
    end = len(rest)
    for mark in "/?#":  # the authority ends at the first of these; an "@" after it is the path's
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    userinfo, at, host = rest[:end].rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not sep or not at or not colon:
        return url
    return f"{scheme}://{user}:{REDACTED}@{host}{rest[end:]}"


def _weights(route: Any, versions: list[str], stable: str) -> dict[str, float]:
    """Each version's share of the split in percent (rules aside)."""
    if not route.split:
        return {name: (100.0 if name == stable else 0.0) for name in versions}
    total = sum(entry.weight for entry in route.split)
    shares = {name: 0.0 for name in versions}
    for entry in route.split:
        shares[entry.version] = 100.0 * entry.weight / total if total else 0.0
    return shares


def status_document(
    config: Config,
    table: Any,
    per_version: dict[tuple[str, str], WindowStats],
    pools: Any,
    window_seconds: float,
    health: Any = None,
) -> dict[str, Any]:
    """Routes, versions, weights, endpoints and the last window's figures per version.

    ``health`` (a HealthMonitor) marks endpoints unhealthy or ejected and says where a
    version with none left sends its share; without it every endpoint counts as healthy.
    """
    services: dict[str, Any] = {}
    for name, service in config.services.items():
        stable = service.stable or next(iter(service.versions))
        versions = {}
        for version_name, version in service.versions.items():
            group = table.group(name, version_name)
            live = per_version.get((name, version_name))
            if health is not None:
                marks = health.health.describe(name, version_name)
            else:
                marks = {
                    "serving": bool(group.endpoints),
                    "falls_back_to": None,
                    "endpoints": [
                        {"address": e.address, "healthy": True, "ejected": False, "detail": None}
                        for e in group.endpoints
                    ],
                }
            by_address = {
                e.address: e for e in table.endpoints if (e.service, e.version) == (name, version_name)
            }
            for entry in marks["endpoints"]:
                endpoint = by_address.get(entry["address"])
                pool = pools.pools.get(endpoint.key) if pools is not None and endpoint is not None else None
                entry["active"] = pool.active if pool else 0
                entry["idle"] = len(pool.idle) if pool else 0
            versions[version_name] = {
                "stable": version_name == stable,
                "labels": dict(version.labels),
                "endpoints": marks["endpoints"],
                "serving": marks["serving"],
                "falls_back_to": marks["falls_back_to"],
                "last_window": live.summary() if live is not None else None,
            }
        services[name] = {"stable": stable, "versions": versions}
    routes = []
    for route in config.routes:
        service = config.services[route.service]
        stable = service.stable or next(iter(service.versions))
        routes.append(
            {
                "name": route.name,
                "service": route.service,
                "weights": _weights(route, list(service.versions), stable),
                "rules": [rule.version for rule in route.rules],
                "sticky": _sticky_source(route),
                "mirror": {"version": route.mirror.version, "percent": route.mirror.percent}
                if route.mirror
                else None,
            }
        )
    return {"window_seconds": window_seconds, "routes": routes, "services": services}


def _sticky_source(route: Any) -> str | None:
    sticky = route.sticky
    if sticky is None:
        return None
    if sticky.header:
        return f"header:{sticky.header}"
    if sticky.cookie:
        return f"cookie:{sticky.cookie}"
    return "client_ip"
