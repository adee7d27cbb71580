"""Paths inside a config and problem formatting."""

from __future__ import annotations

import pytest

from proxy.config.addresses import HostPort, parse_host_port
from proxy.config.paths import Problem, format_path, format_problem, line_of, parse_msgspec_path


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (("routes", 2, "split", 1, "weight"), "routes[2].split[1].weight"),
        (("services", "api", "versions", "v1"), "services.api.versions.v1"),
        (("routes", 0, "match", "headers", "X-User"), "routes[0].match.headers.X-User"),
        (("services", "a.b", "stable"), 'services["a.b"].stable'),
        ((), ""),
    ],
)
def test_format_path(path: tuple, text: str) -> None:
    assert format_path(path) == text


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("$", ()),
        ("$.routes[2].split[1].weight", ("routes", 2, "split", 1, "weight")),
        ("$.services[...].versions", ("services",)),  # msgspec does not record dict keys
    ],
)
def test_parse_msgspec_path(text: str, path: tuple) -> None:
    assert parse_msgspec_path(text) == path


def test_line_of_falls_back_to_the_nearest_parent() -> None:
    lines = {("routes",): 3, ("routes", 0): 4}
    assert line_of(("routes", 0, "name"), lines) == 4
    assert line_of(("limits", "max_headers"), lines) is None


def test_format_problem() -> None:
    problem = Problem(("routes", 0, "name"), "missing required field")
    assert (
        format_problem("a.yaml", problem, {("routes", 0): 7})
        == "a.yaml: routes[0].name: missing required field (line 7)"
    )
    assert format_problem("a.toml", problem) == "a.toml: routes[0].name: missing required field"
    assert format_problem("a.yaml", Problem((), "empty")) == "a.yaml: empty"
    assert format_problem("a.yaml", Problem(("x",), "twice", 9), {("x",): 2}).endswith("(line 9)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", HostPort("127.0.0.1", 8080)),
        ("[::1]:80", HostPort("::1", 80)),
        ("localhost:1", HostPort("localhost", 1)),
        ("api-v2.default.svc.cluster.local:65535", HostPort("api-v2.default.svc.cluster.local", 65535)),
    ],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("localhost", "no port"),
        ("::1:80", "needs brackets"),
        ("[::1]80", "[IPv6]:port"),
        ("[nope]:80", "not an IPv6 address"),
        (":80", "no host"),
        ("h:0", "from 1 to 65535"),
        ("h:65536", "from 1 to 65535"),
        ("h:8o", "from 1 to 65535"),
        ("300.1.1.1:80", "not an IPv4 address"),
        ("-bad:80", "not an IP address or a host name"),
        ("a b:80", "not an IP address or a host name"),
    ],
)
def test_parse_host_port_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_host_port(text)


def test_port_zero_only_when_allowed() -> None:
    assert parse_host_port("127.0.0.1:0", allow_port_zero=True) == HostPort("127.0.0.1", 0)
    with pytest.raises(ValueError):
        parse_host_port("127.0.0.1:0")
