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
from proxy.health.state import falls_back_to
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
    merged: Any = None,
) -> dict[str, Any]:
    """Routes, versions, weights, endpoints and the last window's figures per version.

    ``health`` (a HealthMonitor) marks endpoints unhealthy or ejected and says where a
    version with none left sends its share; without it every endpoint counts as healthy.
    A supervisor passes ``merged`` (``proxy.runtime.ipc.MergedEndpoints``) instead of
    ``health`` and ``pools``: the marks and pool connections of its live workers.
    """
    services: dict[str, Any] = {}
    for name, service in config.services.items():
        stable = service.stable or next(iter(service.versions))
        versions = {}
        for version_name, version in service.versions.items():
            live = per_version.get((name, version_name))
            if merged is not None:
                marks = _merged_marks(config, table, name, version_name, merged)
            else:
                marks = _local_marks(table, name, version_name, pools, health)
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


def _endpoint_entry(
    address: str, healthy: bool, ejected: bool, detail: str | None, active: int, idle: int
) -> dict[str, Any]:
    """One endpoint of /status: the same keys from one process and from a supervisor."""
    return {
        "address": address,
        "healthy": healthy,
        "ejected": ejected,
        "detail": detail,
        "active": active,
        "idle": idle,
    }


def _local_marks(table: Any, service: str, version: str, pools: Any, health: Any) -> dict[str, Any]:
    """One version in this process: its health marks and each endpoint's pool."""
    if health is not None:
        marks = health.health.describe(service, version)
    else:
        group = table.group(service, version)
        marks = {
            "serving": bool(group.endpoints),
            "falls_back_to": None,
            "endpoints": [
                {"address": e.address, "healthy": True, "ejected": False, "detail": None}
                for e in group.endpoints
            ],
        }
    by_address = {e.address: e for e in table.endpoints if (e.service, e.version) == (service, version)}
    endpoints = []
    for entry in marks["endpoints"]:
        endpoint = by_address.get(entry["address"])
        pool = pools.pools.get(endpoint.key) if pools is not None and endpoint is not None else None
        active, idle = (pool.active, len(pool.idle)) if pool else (0, 0)
        marks_of = (entry["healthy"], entry["ejected"], entry["detail"])
        endpoints.append(_endpoint_entry(entry["address"], *marks_of, active, idle))
    return {**marks, "endpoints": endpoints}


def _merged_marks(config: Config, table: Any, service: str, version: str, merged: Any) -> dict[str, Any]:
    """One version over a supervisor's live workers (``MergedEndpoints``).

    Each endpoint shows the worst state any worker holds and in how many of the ``workers``.
    A worker serves the version while it holds one of its endpoints usable; the version shows
    as serving only when every worker does (different workers may eject different endpoints).
    """
    endpoints = []
    out_everywhere: set[int] | None = None  # workers that hold every endpoint so far out
    for endpoint in table.endpoints:
        if (endpoint.service, endpoint.version) != (service, version):
            continue
        total = merged.get((service, version, endpoint.address))
        out_everywhere = set(total.out_in) if out_everywhere is None else out_everywhere & total.out_in
        entry = _endpoint_entry(
            endpoint.address, total.healthy, total.ejected, total.detail, total.active, total.idle
        )
        entry.update(unhealthy_in=total.unhealthy_in, ejected_in=total.ejected_in, workers=merged.workers)
        endpoints.append(entry)
    serving = out_everywhere is not None and not out_everywhere
    return {
        "serving": serving,
        "falls_back_to": _falls_back_to(config, service, version, serving),
        "endpoints": endpoints,
    }


def _falls_back_to(config: Config, service: str, version: str, serving: bool) -> str | None:
    """``falls_back_to`` with the service's stable version and setting read from the config."""
    settings = config.services[service]
    stable = settings.stable or next(iter(settings.versions))
    return falls_back_to(stable, settings.on_empty_version, version, serving)
