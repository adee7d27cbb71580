"""Rollout weights into a config: the route table is compiled from splits, so a rollout writes splits.

``canary_split`` turns "the canary gets N percent" into integer weights for every
version the route sends traffic to: the canary gets N, and the rest keep the ratios of
the route's own ``split`` without the canary (the stable version alone when the split
is empty). The order puts the canary last before the stable version, so that with
``proxy.routing.choice``'s bucket layout raising the canary's weight only moves users
from the stable version to the canary, and lowering it only moves them back.

``apply_weights`` replaces the splits of the named routes with
``msgspec.structs.replace``; the result is an ordinary ``Config`` for ``RouteTable``.
``weights_from_states`` (and ``saved_weights``, which reads ``rollouts.json``) compute
the same weights from persisted rollout states, for a process that does not run the
controller (a worker of the supervisor).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec

from proxy.config.schema import Config, Route, Service, SplitEntry
from proxy.rollout.spec import rollout_routes, stable_version
from proxy.rollout.state import RolloutState, load_states

log = logging.getLogger("graylane")

Weights = dict[str, dict[str, int]]  # route -> version -> weight


def canary_split(route: Route, service: Service, canary: str, percent: int) -> dict[str, int]:
    """Integer weights (in split order) that give ``canary`` ``percent`` % and the rest their ratios."""
    stable = stable_version(service)
    base = {entry.version: entry.weight for entry in route.split if entry.version != canary}
    if sum(base.values()) <= 0:
        base = {stable: 1}
    total = sum(base.values())
    percent = max(0, min(100, percent))
    # Scaled by 100 * total so every ratio stays exact in integers.
    out = {version: (100 - percent) * weight for version, weight in base.items() if version != stable}
    out[canary] = percent * total
    out[stable] = (100 - percent) * base.get(stable, 0)
    return out


def apply_weights(config: Config, weights: Mapping[str, Mapping[str, int]]) -> Config:
    """``config`` with the split of every route named in ``weights`` replaced (others untouched)."""
    if not weights:
        return config
    routes = []
    for route in config.routes:
        wanted = weights.get(route.name)
        if wanted is None:
            routes.append(route)
            continue
        split = [SplitEntry(version=version, weight=int(weight)) for version, weight in wanted.items()]
        routes.append(msgspec.structs.replace(route, split=split))
    return msgspec.structs.replace(config, routes=routes)


def weights_from_states(config: Config, states: Mapping[str, RolloutState]) -> Weights:
    """The weights the rollouts of ``config`` want, from saved states (a route without one: canary 0)."""
    out: Weights = {}
    for name, route in rollout_routes(config).items():
        assert route.rollout is not None
        service = config.services[route.service]
        state = states.get(name)
        fits = state is not None and state.canary == route.rollout.canary and state.service == route.service
        percent = state.weight if fits and state is not None else 0
        out[name] = canary_split(route, service, route.rollout.canary, percent)
    return out


def saved_weights(config: Config) -> Weights:
    """``weights_from_states`` with the states of ``rollouts.json`` (a worker at start and on reload).

    An unreadable file gives every canary 0: the safe side.
    """
    if not rollout_routes(config):
        return {}
    try:
        states = load_states(config.rollouts.state_dir)
    except OSError as exc:
        log.error("cannot read the rollout state in %s: %s", config.rollouts.state_dir, exc)
        states = {}
    return weights_from_states(config, states)
