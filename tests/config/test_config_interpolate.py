"""${VAR} and ${VAR:-default} in string values."""

from __future__ import annotations

import pytest

from proxy.config.interpolate import interpolate


def _one(text: str, env: dict[str, str]) -> str:
    value, problems = interpolate({"k": text}, env)
    assert problems == []
    return value["k"]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${HOST}:80", {"HOST": "10.0.0.1"}, "10.0.0.1:80"),
        ("${HOST:-localhost}:80", {}, "localhost:80"),
        ("${HOST:-localhost}:80", {"HOST": ""}, "localhost:80"),  # as in the shell: empty takes the default
        ("${HOST:-localhost}:80", {"HOST": "h"}, "h:80"),
        ("${A}${B}", {"A": "x", "B": "y"}, "xy"),
        ("${EMPTY_DEFAULT:-}", {}, ""),
        ("${SET_BUT_EMPTY}", {"SET_BUT_EMPTY": ""}, ""),
        ("$${NOT_A_VAR}", {}, "${NOT_A_VAR}"),
        ("cost: $5", {}, "cost: $5"),
        ("${X:-a:-b}", {}, "a:-b"),
    ],
)
def test_substitution(text: str, env: dict[str, str], expected: str) -> None:
    assert _one(text, env) == expected


def test_walks_nested_values_but_not_keys() -> None:
    data = {"${K}": [{"a": "${V}"}, 3, None, True]}
    value, problems = interpolate(data, {"K": "key", "V": "value"})
    assert problems == []
    assert value == {"${K}": [{"a": "value"}, 3, None, True]}


def test_missing_variable_is_reported_with_its_path() -> None:
    _, problems = interpolate({"listeners": [{"address": "${ADDR}"}]}, {})
    assert [(p.path, p.message) for p in problems] == [
        (("listeners", 0, "address"), "environment variable ADDR is not set (no default given)")
    ]


@pytest.mark.parametrize("text", ["${", "${1X}", "${X", "${X:default}", "${ }"])
def test_malformed_placeholder(text: str) -> None:
    _, problems = interpolate({"k": text}, {"X": "x"})
    assert len(problems) == 1
    assert problems[0].path == ("k",)
    assert "malformed placeholder" in problems[0].message
