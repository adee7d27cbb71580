"""Reading a route's ``rollout`` section: what kind each step is, how long a pause lasts.

The schema keeps ``pause`` loose (``10m``, ``600``, ``{}`` or ``{duration: 10m}``) because
msgspec cannot put the Duration type in a union; these helpers give it one meaning.
Validation (``proxy.config.validate.check_rollouts``) has already refused bad values.
"""

from __future__ import annotations

from typing import Literal

from proxy.config.schema import Config, PauseUntil, RolloutStep, Route, Service, Webhook, WebhookEvent
from proxy.config.units import format_duration, parse_duration

StepKind = Literal["weight", "timed", "until_promoted"]


def step_kind(step: RolloutStep) -> StepKind:
    if step.set_weight is not None:
        return "weight"
    return "timed" if pause_seconds(step) is not None else "until_promoted"


def pause_seconds(step: RolloutStep) -> float | None:
    """The length of a timed pause; None for a weight step or a pause until promoted."""
    pause = step.pause
    if pause is None:
        return None
    if isinstance(pause, PauseUntil):
        return None if pause.duration is None else float(pause.duration)
    return float(parse_duration(pause))


def describe(step: RolloutStep) -> str:
    """``set_weight 25``, ``pause 10m``, ``pause until promoted``."""
    kind = step_kind(step)
    if kind == "weight":
        return f"set_weight {step.set_weight}"
    if kind == "timed":
        return f"pause {format_duration(pause_seconds(step) or 0.0)}"
    return "pause until promoted"


def stable_version(service: Service) -> str:
    return service.stable if service.stable is not None else next(iter(service.versions))


def webhooks_for(config: Config, route: Route, event: WebhookEvent) -> list[Webhook]:
    """The top-level webhooks, then the route's own, that want ``event``."""
    own = route.rollout.webhooks if route.rollout is not None else []
    return [hook for hook in [*config.rollouts.webhooks, *own] if event in hook.events]


def rollout_routes(config: Config) -> dict[str, Route]:
    """Every route with a rollout, by name, in config order."""
    return {route.name: route for route in config.routes if route.rollout is not None}
