"""The policies' counters (``PolicyRuntime.snapshot()``) as Prometheus counter families."""

from __future__ import annotations

from typing import Any

from proxy.observe.metrics import Family

_LIMIT_OUTCOMES = ("allowed", "limited", "shadow_limited", "unavailable")


def policy_families(snapshot: dict[str, Any]) -> list[Family]:
    auth = snapshot["auth"]
    failures = {(reason,): count for reason, count in auth["failures"].items()}
    verified = {("verified",): auth["verified"], ("cache_hit",): auth["cache_hits"]}
    limits = {
        (limit["route"], limit["limit"], outcome): limit[outcome]
        for limit in snapshot["rate_limits"]
        for outcome in _LIMIT_OUTCOMES
    }
    families: list[Family] = [
        (
            "graylane_auth_failures_total",
            "Requests refused by JWT authentication, by reason.",
            ("reason",),
            failures,
        ),
        ("graylane_auth_tokens_total", "Tokens accepted, verified or from the cache.", ("result",), verified),
        (
            "graylane_rate_limit_decisions_total",
            "Rate limit decisions by route, limit and outcome.",
            ("route", "limit", "outcome"),
            limits,
        ),
    ]
    redis = snapshot.get("redis")
    if redis is not None:
        families.append(
            (
                "graylane_rate_limit_redis_errors_total",
                "Redis round trips that failed (the limit then fails open or closed).",
                (),
                {(): redis["errors"]},
            )
        )
    return families
