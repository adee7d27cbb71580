"""The rollout part of the config: schema, cross-field checks, step helpers, the seed example."""

from __future__ import annotations

import pathlib

import pytest
from rollout_support import rollout_config

from proxy.config.convert import convert
from proxy.config.dump import dump_config
from proxy.config.load import load_config
from proxy.config.schema import Config, PauseUntil, RolloutStep
from proxy.config.validate import CHECKS, validate
from proxy.rollout.spec import describe, pause_seconds, step_kind, webhooks_for

CONF = pathlib.Path(__file__).parents[2] / "conf"


def problems(tmp_path, **changes) -> list[str]:
    """The problems of a rollout config with ``changes`` to the route's rollout (raw dicts)."""
    data = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            "shop": {"stable": "v1", "versions": {"v1": {"endpoints": ["127.0.0.1:1"]}, "v2": {}}},
        },
        "routes": [
            {
                "name": "shop",
                "service": "shop",
                "rollout": {"canary": "v2", "steps": [{"set_weight": 5}], **changes.pop("rollout", {})},
            }
        ],
        "rollouts": {"state_dir": str(tmp_path), **changes.pop("rollouts", {})},
        **changes,
    }
    config, found = convert(data, Config)
    if config is None:
        return [f"{p.path}: {p.message}" for p in found]
    return validate(config)


def test_the_checks_are_registered():
    names = {check.__name__ for check in CHECKS}
    assert {"check_rollouts", "check_rollout_settings", "check_health", "check_outlier"} <= names


def test_a_good_rollout_has_no_problems(tmp_path):
    assert problems(tmp_path) == []


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        ({"canary": "v9"}, "routes[0].rollout.canary: 'v9' is not a version of 'shop' (defined: v1, v2)"),
        ({"canary": "v1"}, "routes[0].rollout.canary: 'v1' is the stable version of 'shop'"),
        ({"steps": []}, "routes[0].rollout.steps: a rollout needs at least one step"),
        ({"steps": [{}]}, "routes[0].rollout.steps[0]: set exactly one of set_weight, pause"),
        (
            {"steps": [{"set_weight": 5, "pause": "1m"}]},
            "routes[0].rollout.steps[0]: set exactly one of set_weight, pause",
        ),
        (
            {"steps": [{"set_weight": 101}]},
            "routes[0].rollout.steps[0].set_weight: must be from 0 to 100 (percent), not 101",
        ),
        ({"steps": [{"pause": "soon"}]}, "routes[0].rollout.steps[0].pause: invalid duration 'soon'"),
        ({"steps": [{"pause": 0}]}, "routes[0].rollout.steps[0].pause: must be > 0"),
        (
            {"steps": [{"pause": {"duration": "0s"}}]},
            "routes[0].rollout.steps[0].pause.duration: must be > 0",
        ),
        ({"analysis": {"interval": 0}}, "routes[0].rollout.analysis.interval: must be > 0"),
        ({"analysis": {"failure_limit": 0}}, "routes[0].rollout.analysis.failure_limit: must be >= 1"),
        ({"analysis": {"max_inconclusive": 0}}, "routes[0].rollout.analysis.max_inconclusive: must be >= 1"),
        ({"analysis": {"min_requests": -1}}, "routes[0].rollout.analysis.min_requests: must be >= 0"),
        (
            {"analysis": {"max_error_rate": 5}},
            "routes[0].rollout.analysis.max_error_rate: a ratio from 0 to 1 (0.05 = 5%), not 5.0",
        ),
        ({"analysis": {"max_p99": 0}}, "routes[0].rollout.analysis.max_p99: must be > 0"),
        (
            {"webhooks": [{"name": "x", "url": "ftp://h/"}]},
            "routes[0].rollout.webhooks[0].url: 'ftp://h/' is not an http:// or https:// URL with a host",
        ),
        (
            {"webhooks": [{"name": "x", "url": "http://h:99999/"}]},
            "routes[0].rollout.webhooks[0].url: 'http://h:99999/': Port out of range 0-65535",
        ),
        ({"webhooks": [{"name": "x", "url": "http://h/", "events": []}]}, "events: name at least one event"),
        ({"webhooks": [{"name": "x", "url": "http://h/", "timeout": 0}]}, "webhooks[0].timeout: must be > 0"),
        (
            {"webhooks": [{"name": "x", "url": "http://h/", "retries": -1}]},
            "webhooks[0].retries: must be >= 0",
        ),
        (
            {"webhooks": [{"name": "x", "url": "http://h/", "headers": {"X Bad": "1"}}]},
            'webhooks[0].headers["X Bad"]: not a valid header name',
        ),
        ({"webhooks": [{"name": "x", "url": "http://h/", "events": ["later"]}]}, "is not one of"),
    ],
)
def test_rollout_problems(tmp_path, rollout, expected):
    found = problems(tmp_path, rollout=rollout)
    assert any(expected in problem for problem in found), found


def test_settings_problems(tmp_path):
    found = problems(
        tmp_path,
        rollouts={
            "state_dir": "",
            "webhooks": [{"name": "a", "url": "http://h/"}, {"name": "a", "url": "http://h/"}],
        },
    )
    assert found == [
        "rollouts.state_dir: must not be empty",
        "rollouts.webhooks[1].name: 'a' is already the name of webhooks[0]",
    ]


def test_every_spelling_of_a_pause():
    timed = [
        RolloutStep(pause="10m"),
        RolloutStep(pause=600.0),
        RolloutStep(pause=PauseUntil(duration=600.0)),
    ]
    assert [pause_seconds(step) for step in timed] == [600.0] * 3
    assert {step_kind(step) for step in timed} == {"timed"}
    assert [describe(step) for step in timed] == ["pause 10m"] * 3
    until = RolloutStep(pause=PauseUntil())
    assert (step_kind(until), pause_seconds(until), describe(until)) == (
        "until_promoted",
        None,
        "pause until promoted",
    )
    weight = RolloutStep(set_weight=25)
    assert (step_kind(weight), pause_seconds(weight), describe(weight)) == ("weight", None, "set_weight 25")


def test_webhooks_for_an_event(tmp_path):
    config = rollout_config(
        tmp_path,
        webhooks=[
            {"name": "all", "url": "http://h/"},
            {"name": "gate", "url": "http://h/", "events": ["step"]},
        ],
    )
    route = config.routes[0]
    assert [h.name for h in webhooks_for(config, route, "step")] == ["all", "gate"]
    assert [h.name for h in webhooks_for(config, route, "aborted")] == ["all"]


def test_a_dumped_rollout_config_loads_back_equal(tmp_path):
    config = rollout_config(
        tmp_path,
        steps=[{"set_weight": 5}, {"pause": "10m"}, {"pause": {}}, {"set_weight": 100}],
        analysis={"interval": "30s", "max_p99": "500ms"},
        webhooks=[{"name": "ci", "url": "http://127.0.0.1:1/x"}],
    )
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(config))
    assert load_config(str(path)) == config


def test_the_seed_scenario_example(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAYLANE_STATE_DIR", str(tmp_path))
    config = load_config(str(CONF / "rollout.yaml"))
    rollout = config.routes[0].rollout
    assert rollout is not None and rollout.canary == "v2"
    weights = [step.set_weight for step in rollout.steps if step.set_weight is not None]
    assert weights == [5, 25, 50, 100]
    analysis = rollout.analysis
    assert analysis is not None
    assert (analysis.interval, analysis.failure_limit) == (30.0, 3)
    assert (analysis.max_error_rate, analysis.max_p99) == (0.05, 0.5)
    assert config.rollouts.state_dir == str(tmp_path)
    service = config.services["shop"]
    assert service.health is not None and service.outlier is not None
