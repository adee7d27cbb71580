"""Every kind of config problem names the file, the path, the reason and (YAML) the line.

Each case edits a valid YAML document; the line the problem must point at carries
the marker ``# <-``.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import pytest

from proxy.config import load_config
from proxy.errors import ConfigError

BASE = """\
version: 1
listeners:
  - address: 127.0.0.1:8080
services:
  api:
    versions:
      v1:
        endpoints: [127.0.0.1:9001]
      v2:
        endpoints: [127.0.0.1:9002]
routes:
  - name: all
    service: api
    match:
      path: {prefix: /}
    split:
      - {version: v1, weight: 90}
      - {version: v2, weight: 10}
"""
ROUTE_END = "      - {version: v2, weight: 10}\n"


class Case(NamedTuple):
    edits: list[tuple[str, str]]  # (old, new) replacements in BASE; "" as old appends
    path: str
    reason: str
    count: int = 1  # problems expected in all


def _add_to_route(text: str) -> list[tuple[str, str]]:
    return [(ROUTE_END, ROUTE_END + text)]


CASES = {
    # --- conversion (schema) ---
    "unknown field": Case(_add_to_route("    colour: red  # <-\n"), "routes[0].colour", "unknown field"),
    "misspelt field": Case(
        [("weight: 10}", "wieght: 10}  # <-")], "routes[0].split[1].wieght", "did you mean 'weight'?", count=2
    ),
    "missing field": Case(
        [("    service: api\n", ""), ("  - name: all", "  - name: all  # <-")],
        "routes[0].service",
        "missing required field",
    ),
    "wrong type": Case(
        [("weight: 10}", "weight: ten}  # <-")], "routes[0].split[1].weight", "expected `int`, got `str`"
    ),
    "list expected": Case(
        [("listeners:\n  - address: 127.0.0.1:8080\n", "listeners: 127.0.0.1:8080  # <-\n")],
        "listeners",
        "expected `array`, got `str`",
    ),
    "number for text": Case(
        _add_to_route("    request_headers: {set: {X-Gray: yes}}  # <-\n"),
        "routes[0].request_headers.set.X-Gray",
        "expected a string, got True (quote it)",
    ),
    "bad literal": Case([("", "log_level: loud  # <-\n")], "log_level", "'loud' is not one of 'debug'"),
    "unquoted literal": Case(
        [("  api:\n", "  api:\n    on_empty_version: 503  # <-\n")],
        "services.api.on_empty_version",
        "quote it",
    ),
    "bad duration": Case(
        [("", "limits:\n  keepalive_timeout: 5 parsecs  # <-\n")],
        "limits.keepalive_timeout",
        "invalid duration '5 parsecs'",
    ),
    "bad size": Case(
        [("", "limits:\n  max_header_bytes: 16KB  # <-\n")], "limits.max_header_bytes", "invalid size '16KB'"
    ),
    "duplicate key": Case(
        [("routes:", "      v2:  # <-\n        endpoints: []\nroutes:")],
        "services.api.versions.v2",
        "duplicate key (first at line 9)",
    ),
    "number as key": Case([("      v2:", "      2:  # <-")], "services.api.versions.2", "must be a string"),
    "unset variable": Case(
        [("address: 127.0.0.1:8080", "address: ${GRAYLANE_TEST_UNSET}  # <-")],
        "listeners[0].address",
        "environment variable GRAYLANE_TEST_UNSET is not set",
    ),
    # --- validation (across fields) ---
    "no listeners": Case(
        [("listeners:\n  - address: 127.0.0.1:8080\n", "listeners: []  # <-\n")],
        "listeners",
        "at least one listener",
    ),
    "listener port": Case(
        [("127.0.0.1:8080", "127.0.0.1:99999  # <-")],
        "listeners[0].address",
        "port must be a number from 0 to 65535",
    ),
    "ipv6 brackets": Case([("127.0.0.1:8080", '"::1:8080"  # <-')], "listeners[0].address", "needs brackets"),
    "duplicate listener": Case(
        [("services:", "  - address: 127.0.0.1:8080  # <-\nservices:")],
        "listeners[1].address",
        "already used by listeners[0]",
    ),
    "tls file": Case(
        [("services:", "    tls: {cert: no-cert.pem, key: no-key.pem}  # <-\nservices:")],
        "listeners[0].tls.cert",
        "no-cert.pem': No such file",
        count=2,
    ),
    "no versions": Case(
        [("routes:", "  web:\n    versions: {}  # <-\nroutes:")],
        "services.web.versions",
        "at least one version",
    ),
    "stable version": Case(
        [("  api:\n", "  api:\n    stable: v3  # <-\n")],
        "services.api.stable",
        "'v3' is not a version of 'api' (defined: v1, v2)",
    ),
    "endpoint": Case(
        [("[127.0.0.1:9002]", "[127.0.0.1]  # <-")], "services.api.versions.v2.endpoints[0]", "no port"
    ),
    "unknown service": Case(
        [("service: api", "service: apj  # <-")], "routes[0].service", "no service named 'apj' (defined: api)"
    ),
    "split version": Case(
        [("{version: v2, weight: 10}", "{version: v3, weight: 10}  # <-")],
        "routes[0].split[1].version",
        "'v3' is not a version of 'api'",
    ),
    "rule version": Case(
        _add_to_route("    rules:\n      - match: {methods: [POST]}\n        version: v9  # <-\n"),
        "routes[0].rules[0].version",
        "'v9' is not a version of 'api'",
    ),
    "mirror version": Case(
        _add_to_route("    mirror: {version: v7}  # <-\n"),
        "routes[0].mirror.version",
        "'v7' is not a version",
    ),
    "negative weight": Case(
        [("weight: 10}", "weight: -5}  # <-")], "routes[0].split[1].weight", "must be >= 0"
    ),
    "zero weights": Case(
        [("weight: 90}", "weight: 0}"), ("weight: 10}", "weight: 0}"), ("split:", "split:  # <-")],
        "routes[0].split",
        "weights are all zero",
    ),
    "split twice": Case(
        [("{version: v2, weight: 10}", "{version: v1, weight: 10}  # <-")],
        "routes[0].split[1].version",
        "'v1' is already in split[0]",
    ),
    "two path matchers": Case(
        [("path: {prefix: /}", "path: {prefix: /, exact: /x}  # <-")],
        "routes[0].match.path",
        "set exactly one of exact, prefix, regex (found exact, prefix)",
    ),
    "empty header matcher": Case(
        [("path: {prefix: /}", "headers: {X-A: {}}  # <-")], "routes[0].match.headers.X-A", "(found none)"
    ),
    "regex": Case(
        [("path: {prefix: /}", "path: {regex: '(oops'}  # <-")],
        "routes[0].match.path.regex",
        "invalid regex '(oops': missing ), unterminated subpattern",
    ),
    "sticky sources": Case(
        _add_to_route("    sticky: {header: X-User, client_ip: true}  # <-\n"),
        "routes[0].sticky",
        "exactly one of header, cookie, client_ip, claim (found 2: header, client_ip)",
    ),
    "mirror percent": Case(
        _add_to_route("    mirror: {version: v2, percent: 150}  # <-\n"),
        "routes[0].mirror.percent",
        "from 0 to 100",
    ),
    "route name": Case(
        [("", "  - name: all  # <-\n    service: api\n")],
        "routes[1].name",
        "'all' is already the name of routes[0]",
    ),
    "method": Case(
        [("path: {prefix: /}", "methods: [get]  # <-")], "routes[0].match.methods[0]", "upper-case"
    ),
    "header name": Case(
        [("path: {prefix: /}", "headers: {'X User': {present: true}}  # <-")],
        'routes[0].match.headers["X User"]',
        "not a valid header name",
    ),
    "header value": Case(
        _add_to_route('    request_headers: {set: {X-A: "a\\r\\nb"}}  # <-\n'),
        "routes[0].request_headers.set.X-A",
        "must not contain CR, LF or NUL",
    ),
    "limit": Case([("", "limits:\n  max_headers: 0  # <-\n")], "limits.max_headers", "must be > 0"),
}


def _document(case: Case) -> str:
    text = BASE
    for old, new in case.edits:
        if old:
            assert old in text, old
        text = text + new if not old else text.replace(old, new, 1)
    return text


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_problem_names_file_path_reason_and_line(tmp_path: pathlib.Path, case: Case) -> None:
    text = _document(case)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "# <-" in row)
    file = tmp_path / "graylane.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(file), env={})
    problems = info.value.problems
    matching = [p for p in problems if p.startswith(f"{file}: {case.path}: ")]
    assert matching, problems
    assert case.reason in matching[0]
    assert matching[0].endswith(f"(line {line})"), matching[0]
    assert len(problems) == case.count, problems


def test_base_document_is_valid(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "graylane.yaml"
    file.write_text(BASE)
    assert load_config(str(file), env={}).routes[0].name == "all"


def test_many_problems_reported_at_once(tmp_path: pathlib.Path) -> None:
    text = _document(
        Case(
            [
                ("127.0.0.1:8080", "127.0.0.1:99999"),
                ("service: api", "service: apj"),
                ("", "limits:\n  max_headers: 0\n"),
            ],
            "",
            "",
        )
    )
    file = tmp_path / "graylane.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(file), env={})
    paths = [p.split(": ")[1] for p in info.value.problems]
    assert paths == ["listeners[0].address", "routes[0].service", "limits.max_headers"]  # in file order


def test_schema_problems_in_several_sections_are_all_reported(tmp_path: pathlib.Path) -> None:
    text = BASE.replace("weight: 10}", "weight: ten}") + "limits:\n  keepalive_timeout: forever\nbogus: 1\n"
    file = tmp_path / "graylane.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(file), env={})
    paths = sorted(p.split(": ")[1] for p in info.value.problems)
    assert paths == ["bogus", "limits.keepalive_timeout", "routes[0].split[1].weight"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("version: 1\nlisteners: [\n", "invalid YAML"),
        ("", "the top level must be a mapping of settings, but the file is empty"),
        ("- 1\n- 2\n", "but the file is a list"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
    ],
)
def test_unreadable_yaml(tmp_path: pathlib.Path, text: str, reason: str) -> None:
    file = tmp_path / "graylane.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=reason) as info:
        load_config(str(file))
    assert info.value.problems[0].startswith(f"{file}: ")


def test_yaml_syntax_error_names_the_line(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "graylane.yaml"
    file.write_text("version: 1\nlisteners:\n  - address: [oops\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: .* \(line 4\)"):
        load_config(str(file))


def test_missing_file(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match=f"{file}: cannot read: No such file or directory"):
        load_config(str(file))


def test_unknown_extension(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "graylane.ini"
    file.write_text("[x]\n")
    with pytest.raises(ConfigError, match=r"unknown config format \(use .yaml, .yml, .toml or .json\)"):
        load_config(str(file))


def test_yaml_merge_keys_are_not_duplicates(tmp_path: pathlib.Path) -> None:
    text = BASE.replace(
        "      v1:\n        endpoints: [127.0.0.1:9001]\n",
        "      v1: &v1\n        endpoints: [127.0.0.1:9001]\n        labels: {a: b}\n",
    )
    text = text.replace(
        "      v2:\n        endpoints: [127.0.0.1:9002]\n",
        "      v2:\n        <<: *v1\n        endpoints: [127.0.0.1:9002]\n",
    )
    file = tmp_path / "graylane.yaml"
    file.write_text(text)
    versions = load_config(str(file)).services["api"].versions
    assert versions["v2"].labels == {"a": "b"}
    assert versions["v2"].endpoints == ["127.0.0.1:9002"]
