"""What is measured: the scenarios, the proxies compared in each, and graylane's config for each.

Every proxy under test sees the same backend (one nginx with a port per version) and the same
wrk command. ``plain`` scenarios compare bare proxying: graylane with its access log and
tracing off, nginx without an access log. The ``canary`` scenario is the realistic one:
graylane with a content rule, a sticky 90/10 split, the version header, the access log to a
file, tracing (propagation) and the admin API serving /metrics; nginx and the aiohttp peer
do their equivalents (see ``loadtest.nginx.proxy_conf`` and ``loadtest.aiohttp_proxy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loadtest.nginx import VERSION_HEADER

DIRECT = "direct"
NGINX = "nginx"
GRAYLANE = "graylane"
AIOHTTP = "aiohttp"
TARGETS = (DIRECT, NGINX, GRAYLANE, AIOHTTP)
REFERENCE = NGINX

TARGET_TITLES = {
    DIRECT: "wrk -> backend directly (ceiling)",
    NGINX: "nginx (reference)",
    GRAYLANE: "graylane",
    AIOHTTP: "aiohttp + ClientSession, uvloop",
}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    path: str
    targets: tuple[str, ...]
    script: str | None = None  # a name in loadtest.wrk.SCRIPTS
    headers: tuple[str, ...] = ()
    canary: bool = False  # the realistic config (split, access log, metrics)
    workers: int = 1


SCENARIOS = (
    Scenario("small", "small keep-alive GET", "/small", TARGETS),
    Scenario("16k", "16 KiB response", "/16k", TARGETS),
    Scenario("post4k", "4 KiB POST body", "/post", TARGETS, script="post"),
    Scenario("close", "new connection per request", "/small", TARGETS, headers=("Connection: close",)),
    Scenario(
        "canary",
        "canary 90/10 sticky, log + metrics",
        "/small",
        (NGINX, GRAYLANE, AIOHTTP),
        script="canary",
        canary=True,
    ),
    Scenario("workers2", "2 workers vs 2 nginx workers", "/small", (NGINX, GRAYLANE), workers=2),
)
SCENARIO_KEYS = tuple(s.key for s in SCENARIOS)


def select(keys: list[str] | None) -> list[Scenario]:
    """The scenarios named in ``keys`` (all when None), in the canonical order."""
    if not keys:
        return list(SCENARIOS)
    unknown = sorted(set(keys) - set(SCENARIO_KEYS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIO_KEYS)}")
    return [s for s in SCENARIOS if s.key in keys]


def graylane_config(
    scenario: Scenario,
    port: int,
    backends: dict[str, int],
    *,
    access_log: Path | None = None,
    admin_port: int | None = None,
) -> str:
    """graylane's config for ``scenario`` (JSON, which graylane reads as YAML)."""
    versions = {name: {"endpoints": [f"127.0.0.1:{p}"]} for name, p in backends.items()}
    if not scenario.canary:
        versions = dict(list(versions.items())[:1])
    route: dict[str, object] = {"name": "bench", "service": "api", "match": {"path": {"prefix": "/"}}}
    doc: dict[str, object] = {
        "version": 1,
        "listeners": [{"address": f"127.0.0.1:{port}"}],
        "services": {"api": {"versions": versions}},
        "routes": [route],
        "log_level": "warning",
    }
    if scenario.canary:
        stable, canary = list(versions)[:2]
        route["rules"] = [
            {"match": {"headers": {"X-User-ID": {"regex": r"^user_gray_\d+$"}}}, "version": canary}
        ]
        route["split"] = [{"version": stable, "weight": 90}, {"version": canary, "weight": 10}]
        route["sticky"] = {"header": "X-User-ID"}
        doc["observability"] = {"version_header": VERSION_HEADER}
        doc["access_log"] = {
            "enabled": access_log is not None,
            "path": str(access_log) if access_log else None,
        }
        if admin_port is not None:
            doc["admin"] = {"address": f"127.0.0.1:{admin_port}"}
    else:
        doc["access_log"] = {"enabled": False}
        doc["tracing"] = {"enabled": False}
    if scenario.workers != 1:
        doc["workers"] = scenario.workers
    return json.dumps(doc, indent=2) + "\n"
