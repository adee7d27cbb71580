"""Rollout weights written into a config's splits, and compiled by the real route table. No sockets."""

from __future__ import annotations

import pytest
from rollout_support import ROUTE, rollout_config

from proxy.config.validate import validate
from proxy.rollout.overrides import apply_weights, canary_split, saved_weights, weights_from_states
from proxy.rollout.state import new_state, save_states
from proxy.routing.table import RouteTable


def shares(weights: dict[str, int]) -> dict[str, float]:
    total = sum(weights.values())
    return {version: round(100 * weight / total, 6) for version, weight in weights.items()}


def parts(config):
    route = config.routes[0]
    return route, config.services[route.service]


@pytest.mark.parametrize("percent", [0, 5, 25, 50, 100])
def test_canary_and_stable_only(tmp_path, percent):
    route, service = parts(rollout_config(tmp_path))
    weights = canary_split(route, service, "v2", percent)
    assert shares(weights) == {"v2": percent, "v1": 100 - percent}
    assert list(weights) == ["v2", "v1"]  # the canary before the stable version


def test_other_versions_keep_their_ratio(tmp_path):
    split = [
        {"version": "v1", "weight": 60},
        {"version": "v3", "weight": 20},
        {"version": "v2", "weight": 20},
    ]
    route, service = parts(rollout_config(tmp_path, split=split))
    weights = canary_split(route, service, "v2", 25)
    assert shares(weights) == {"v3": 18.75, "v2": 25, "v1": 56.25}  # v1:v3 stays 3:1
    assert list(weights) == ["v3", "v2", "v1"]  # the canary last before the stable version


def test_percent_is_clamped(tmp_path):
    route, service = parts(rollout_config(tmp_path))
    assert shares(canary_split(route, service, "v2", 140)) == {"v2": 100, "v1": 0}


def test_apply_weights_replaces_only_the_named_routes(tmp_path):
    config = rollout_config(tmp_path)
    changed = apply_weights(config, {ROUTE: {"v2": 5, "v1": 95}})
    assert [(e.version, e.weight) for e in changed.routes[0].split] == [("v2", 5), ("v1", 95)]
    assert changed.routes[0].rollout == config.routes[0].rollout
    assert config.routes[0].split == []  # the original is untouched
    assert apply_weights(config, {}) is config
    assert validate(changed) == []


def test_the_route_table_compiles_rollout_weights(tmp_path):
    config = rollout_config(tmp_path)
    route, service = parts(config)
    table = RouteTable(apply_weights(config, {ROUTE: canary_split(route, service, "v2", 100)}))
    compiled = table.routes[0].choice
    assert compiled.table is None and compiled.constant.version_name == "v2"  # everything to the canary


def test_raising_the_canary_weight_only_moves_users_from_stable_to_canary(tmp_path):
    split = [{"version": "v1", "weight": 60}, {"version": "v3", "weight": 40}]
    config = rollout_config(tmp_path, split=split)
    route, service = parts(config)
    previous: list[str] | None = None
    for percent in (5, 25, 50, 75):
        table = RouteTable(apply_weights(config, {ROUTE: canary_split(route, service, "v2", percent)}))
        choice = table.routes[0].choice
        owners = [choice.targets[slot].version_name for slot in choice.table]
        assert owners.count("v2") == 100 * percent
        if previous is not None:
            for before, now in zip(previous, owners, strict=True):
                # A sticky user of the canary stays; anyone else either stays or moves to the canary.
                assert now == before or now == "v2", (before, now)
                assert before != "v2" or now == "v2"
        previous = owners


def test_weights_from_saved_states(tmp_path):
    import msgspec

    config = rollout_config(tmp_path)
    saved = msgspec.structs.replace(new_state(ROUTE, "shop", "v2", at=1.0), weight=25)
    assert shares(weights_from_states(config, {ROUTE: saved})[ROUTE]) == {"v2": 25, "v1": 75}
    # A saved state of another canary does not apply: the new rollout starts at 0.
    other = msgspec.structs.replace(saved, canary="v3")
    assert shares(weights_from_states(config, {ROUTE: other})[ROUTE]) == {"v2": 0, "v1": 100}
    assert shares(weights_from_states(config, {})[ROUTE]) == {"v2": 0, "v1": 100}


def test_saved_weights_read_the_state_file(tmp_path):
    import msgspec

    config = rollout_config(tmp_path)
    assert shares(saved_weights(config)[ROUTE]) == {"v2": 0, "v1": 100}  # no file yet
    save_states(
        str(tmp_path), {ROUTE: msgspec.structs.replace(new_state(ROUTE, "shop", "v2", at=1.0), weight=50)}
    )
    assert shares(saved_weights(config)[ROUTE]) == {"v2": 50, "v1": 50}
