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


def health_families(monitor: Any) -> list[Family]:
    outlier = monitor.outlier
    return [
        (
            "graylane_outlier_ejections_total",
            "Endpoints ejected after consecutive failures.",
            (),
            {(): outlier.ejections},
        ),
        (
            "graylane_outlier_ejections_skipped_total",
            "Ejections refused by max_ejection_percent.",
            (),
            {(): outlier.skipped},
        ),
        (
            "graylane_endpoint_health_changes_total",
            "Endpoint health or ejection changes.",
            (),
            {(): monitor.changes},
        ),
    ]
