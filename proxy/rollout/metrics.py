"""The rollout controller's and the health monitor's counters as Prometheus families."""

from __future__ import annotations

from typing import Any

from proxy.observe.metrics import Family


def rollout_families(controller: Any) -> list[Family]:
    counts = controller.metrics()
    return [
        (
            "graylane_rollout_transitions_total",
            "Rollout state changes, by route, event and phases.",
            ("route", "event", "from_phase", "to_phase"),
            counts["transitions"],
        ),
        (
            "graylane_rollout_checks_total",
            "Rollout analysis checks, by outcome.",
            ("route", "outcome"),
            counts["checks"],
        ),
        (
            "graylane_rollout_webhooks_total",
            "Rollout webhook calls, by result.",
            ("webhook", "event", "result"),
            counts["webhooks"],
        ),
    ]


def health_counts(monitor: Any) -> dict[str, int]:
    """A HealthMonitor's counters as plain numbers: what ``health_families`` shows, and what a
    worker reports to the supervisor (which sums them)."""
    outlier = monitor.outlier
    return {"ejections": outlier.ejections, "skipped": outlier.skipped, "changes": monitor.changes}


def health_families(counts: dict[str, int]) -> list[Family]:
    """``counts``: ``health_counts(monitor)``, or those of several workers summed."""
    return [
        (
            "graylane_outlier_ejections_total",
            "Endpoints ejected after consecutive failures.",
            (),
            {(): counts.get("ejections", 0)},
        ),
        (
            "graylane_outlier_ejections_skipped_total",
            "Ejections refused by max_ejection_percent.",
            (),
            {(): counts.get("skipped", 0)},
        ),
        (
            "graylane_endpoint_health_changes_total",
            "Endpoint health or ejection changes.",
            (),
            {(): counts.get("changes", 0)},
        ),
    ]
