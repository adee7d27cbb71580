"""Loading: the three formats, interpolation, units, file names."""

from __future__ import annotations

import os
import pathlib

import pytest

from proxy.config import load_config
from proxy.config.schema import Config, Duration, Size
from proxy.errors import ConfigError

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CONF = pathlib.Path(__file__).parents[2] / "conf"

MINIMAL_JSON = (
    '{"version": 1, "listeners": [{"address": "127.0.0.1:8080"}], '
    '"services": {"a": {"versions": {"v1": {}}}}}'
)


@pytest.mark.parametrize("stem", [CONF / "basic", FIXTURES / "full"])
def test_yaml_toml_and_json_give_equal_configs(stem: pathlib.Path) -> None:
    configs = [load_config(f"{stem}.{ext}") for ext in ("yaml", "toml", "json")]
    assert configs[0] == configs[1] == configs[2]
    assert isinstance(configs[0], Config)


def test_full_fixture_values() -> None:
    config = load_config(str(FIXTURES / "full.yaml"))
    limits = config.limits
    assert (limits.max_header_bytes, limits.max_uri_bytes) == (16384, 4096)
    assert (limits.request_head_timeout, limits.keepalive_timeout, limits.drain_timeout) == (
        2.5,
        300.0,
        3600.0,
    )
    assert type(limits.keepalive_timeout) is Duration
    assert type(limits.max_header_bytes) is Size
    assert limits.max_headers == 100  # default kept
    pool = config.services["api"].pool
    assert pool is not None
    assert (pool.connect_timeout, pool.request_timeout, pool.max_idle) == (0.25, 0.0, 8)
    assert config.upstream.idle_timeout == 90.0
    assert config.routes[0].rules[0].match.headers["X-User-ID"].regex == r"^user_gray_\d+$"
    assert config.listeners[1].address == "[::1]:8443"


def test_basic_example_is_as_documented() -> None:
    config = load_config(str(CONF / "basic.yaml"))
    assert [x.address for x in config.listeners] == ["127.0.0.1:8080"]
    assert list(config.services) == ["api"]
    assert config.services["api"].versions["v1"].endpoints == ["127.0.0.1:9001"]
    (route,) = config.routes
    assert (route.name, route.service, route.match.path and route.match.path.prefix) == ("all", "api", "/")


@pytest.mark.parametrize(
    ("name", "text", "path"),
    [
        (
            "x.toml",
            'version = 1\nservices = {}\n[[listeners]]\naddress = "127.0.0.1:1"\ncolour = "red"\n',
            "listeners[0].colour",
        ),
        (
            "x.json",
            MINIMAL_JSON.replace('"v1": {}', '"v1": {"endpionts": []}'),
            "services.a.versions.v1.endpionts",
        ),
        ("x.yml", "version: 1\nlisteners: [{address: '127.0.0.1:1'}]\nservices: {}\ncolour: red\n", "colour"),
    ],
)
def test_unknown_field_rejected_with_its_path(
    tmp_path: pathlib.Path, name: str, text: str, path: str
) -> None:
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    (problem,) = info.value.problems
    assert problem.startswith(f"{file}: {path}: unknown field")


def test_toml_syntax_error(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "x.toml"
    file.write_text("version = 1\nlisteners = = 2\nservices = {}\n")
    with pytest.raises(ConfigError, match=f"{file}: invalid TOML: .*line 2"):
        load_config(str(file))


def test_json_syntax_error_names_the_line(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "x.json"
    file.write_text('{\n  "version": 1,\n  oops\n}\n')
    with pytest.raises(ConfigError, match=f"{file}: invalid JSON: .* \\(line 3\\)"):
        load_config(str(file))


def test_json_duplicate_key(tmp_path: pathlib.Path) -> None:
    file = tmp_path / "x.json"
    file.write_text(MINIMAL_JSON.replace('"v1": {}', '"v1": {}, "v1": {}'))
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    assert info.value.problems == [f"{file}: services.a.versions.v1: duplicate key"]


def _yaml(tmp_path: pathlib.Path, text: str) -> str:
    file = tmp_path / "graylane.yaml"
    file.write_text(text)
    return str(file)


INTERPOLATED = """\
version: 1
listeners:
  - address: ${LISTEN:-127.0.0.1:8080}
services:
  api:
    versions:
      v1: {endpoints: ["${UPSTREAM_HOST}:9001"]}
      v2: {endpoints: ["${UPSTREAM_HOST}:9002"]}
routes:
  - name: all
    service: api
    split:
      - {version: v1, weight: 100}
      - {version: v2, weight: "${CANARY_WEIGHT:-5}"}
    response_headers: {set: {X-Price: "$${literal}"}}
limits:
  keepalive_timeout: ${KEEPALIVE:-75s}
metadata:
  strip: ${STRIP_METADATA:-false}
"""


def test_interpolation_fills_strings_numbers_and_booleans(tmp_path: pathlib.Path) -> None:
    env = {"UPSTREAM_HOST": "10.1.2.3", "CANARY_WEIGHT": "25", "STRIP_METADATA": "true"}
    config = load_config(_yaml(tmp_path, INTERPOLATED), env=env)
    assert config.listeners[0].address == "127.0.0.1:8080"
    assert config.services["api"].versions["v2"].endpoints == ["10.1.2.3:9002"]
    assert config.routes[0].split[1].weight == 25
    assert config.routes[0].response_headers.set == {"X-Price": "${literal}"}
    assert config.limits.keepalive_timeout == 75.0
    assert config.metadata.strip is True


def test_interpolation_defaults(tmp_path: pathlib.Path) -> None:
    config = load_config(_yaml(tmp_path, INTERPOLATED), env={"UPSTREAM_HOST": "h"})
    assert config.routes[0].split[1].weight == 5
    assert config.metadata.strip is False


def test_interpolation_reads_the_process_environment_by_default(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_HOST", "from-environ")
    config = load_config(_yaml(tmp_path, INTERPOLATED))
    assert config.services["api"].versions["v1"].endpoints == ["from-environ:9001"]


def test_every_unset_variable_is_reported_once(tmp_path: pathlib.Path) -> None:
    path = _yaml(tmp_path, INTERPOLATED.replace("${KEEPALIVE:-75s}", "${KEEPALIVE}"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        f"{path}: services.api.versions.v1.endpoints[0]: environment variable UPSTREAM_HOST is not set "
        "(no default given) (line 7)",
        f"{path}: services.api.versions.v2.endpoints[0]: environment variable UPSTREAM_HOST is not set "
        "(no default given) (line 8)",
        f"{path}: limits.keepalive_timeout: environment variable KEEPALIVE is not set "
        "(no default given) (line 17)",
    ]


def test_relative_tls_files_are_found_next_to_the_config(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "server.pem").write_text("cert")
    (tmp_path / "certs" / "server.key").write_text("key")
    path = _yaml(
        tmp_path,
        MINIMAL_JSON.replace(
            '"127.0.0.1:8080"}',
            '"127.0.0.1:8443", "tls": {"cert": "certs/server.pem", "key": "certs/server.key"}}',
        ),
    )
    monkeypatch.chdir("/")
    tls = load_config(path).listeners[0].tls
    assert tls is not None
    assert tls.cert == os.path.join(tmp_path, "certs", "server.pem")
    assert tls.key == os.path.join(tmp_path, "certs", "server.key")


def test_tls_file_that_cannot_be_read(tmp_path: pathlib.Path) -> None:
    (tmp_path / "server.pem").mkdir()  # a directory: unreadable as a file, even for root
    path = _yaml(
        tmp_path,
        MINIMAL_JSON.replace(
            '"127.0.0.1:8080"}', '"127.0.0.1:8443", "tls": {"cert": "server.pem", "key": "server.pem"}}'
        ),
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.split(": ", 2)[1] for p in info.value.problems] == [
        "listeners[0].tls.cert",
        "listeners[0].tls.key",
    ]
    assert "Is a directory" in info.value.problems[0]
