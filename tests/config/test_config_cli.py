"""The graylane command: run, check, dump-config, version."""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
import types
from collections.abc import Iterator

import pytest

import proxy
from proxy.cli import main, setup_logging
from proxy.config import load_config
from proxy.config.schema import Config
from proxy.errors import ConfigError

ROOT = pathlib.Path(__file__).parents[2]
FIXTURES = pathlib.Path(__file__).parent / "fixtures"
BASIC = str(ROOT / "conf" / "basic.yaml")
MANY_PROBLEMS = str(FIXTURES / "many_problems.yaml")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """setup_logging changes the root logger; leave it as it was for other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _graylane(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )


def test_check_good_file_in_a_subprocess() -> None:
    result = _graylane("check", "-c", BASIC)
    assert (result.returncode, result.stdout, result.stderr) == (0, "configuration OK\n", "")


def test_check_bad_file_in_a_subprocess() -> None:
    result = _graylane("check", "-c", MANY_PROBLEMS)
    assert result.returncode == 1
    assert result.stdout == ""
    problems = result.stderr.splitlines()
    assert len(problems) == 22
    assert all(p.startswith(f"{MANY_PROBLEMS}: ") and p.endswith(")") for p in problems)
    assert f"{MANY_PROBLEMS}: routes[1].service: no service named 'nope' (defined: api) (line 31)" in problems


def test_check_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    assert main(["check", "-c", str(tmp_path / "absent.yaml")]) == 1
    assert "absent.yaml: cannot read" in capsys.readouterr().err


def test_check_reports_route_table_problems_with_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Config] = []

    class RouteTable:
        def __init__(self, config: Config) -> None:
            seen.append(config)
            raise ConfigError(["routes[0].match: cannot compile"])

    monkeypatch.setitem(sys.modules, "proxy.routing.table", types.SimpleNamespace(RouteTable=RouteTable))
    assert main(["check", "-c", BASIC]) == 1
    assert capsys.readouterr().err == f"{BASIC}: routes[0].match: cannot compile\n"
    assert seen == [load_config(BASIC)]


def test_check_without_a_route_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "proxy.routing.table", None)  # as if the module did not exist
    assert main(["check", "-c", BASIC]) == 0
    assert capsys.readouterr().out == "configuration OK\n"


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("source", [BASIC, str(FIXTURES / "full.toml")])
def test_dump_config_round_trip(
    fmt: str, source: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dump-config", "-c", source, "--format", fmt]) == 0
    dumped = tmp_path / f"effective.{fmt}"
    dumped.write_text(capsys.readouterr().out)
    assert load_config(str(dumped), env={}) == load_config(source)


def test_dump_config_writes_units_and_filled_placeholders(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        pathlib.Path(BASIC).read_text() + "limits: {keepalive_timeout: 0.0005}\nobservability:\n"
        '  version_header: "${VERSION_HEADER:-X-Version}"\n'
    )
    source = tmp_path / "in.yaml"
    source.write_text(text)
    assert main(["dump-config", "-c", str(source)]) == 0
    out = capsys.readouterr().out
    assert "request_head_timeout: 10s\n" in out
    assert "keepalive_timeout: 0.0005\n" in out
    assert "max_header_bytes: 32KiB\n" in out
    assert "version_header: X-Version\n" in out


def test_dump_config_keeps_literal_placeholders_literal(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(
        pathlib.Path(BASIC)
        .read_text()
        .replace(
            "    service: api", "    service: api\n    response_headers: {set: {X-Template: '$${user}'}}"
        )
    )
    original = load_config(str(source), env={})
    assert original.routes[0].response_headers.set == {"X-Template": "${user}"}
    assert main(["dump-config", "-c", str(source), "--format", "json"]) == 0
    dumped = tmp_path / "out.json"
    dumped.write_text(capsys.readouterr().out)
    assert load_config(str(dumped), env={}) == original


def test_dump_config_bad_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dump-config", "-c", MANY_PROBLEMS]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert MANY_PROBLEMS in captured.err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"graylane {proxy.__version__}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "dump-config" in capsys.readouterr().err


def test_run_with_bad_config_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-c", MANY_PROBLEMS]) == 2
    assert (
        f"{MANY_PROBLEMS}: limits.max_headers: must be > 0 (line 33)" in capsys.readouterr().err.splitlines()
    )


def _fake_server(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[Config, str]]) -> None:
    def run(config: Config, path: str) -> int:
        calls.append((config, path))
        return 7

    monkeypatch.setitem(sys.modules, "proxy.runtime.server", types.SimpleNamespace(run=run))


def test_run_hands_the_config_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Config, str]] = []
    _fake_server(monkeypatch, calls)
    assert main(["run", "-c", BASIC]) == 7
    assert calls == [(load_config(BASIC), BASIC)]
    assert logging.getLogger().level == logging.INFO


def test_run_log_level_override(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Config, str]] = []
    _fake_server(monkeypatch, calls)
    assert main(["run", "-c", BASIC, "--log-level", "debug"]) == 7
    assert calls[0][0].log_level == "debug"
    assert logging.getLogger().level == logging.DEBUG


def test_setup_logging_format(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("warning")
    setup_logging("info")  # a second call replaces the handler: one line per message
    logging.getLogger("proxy.test").info("listening on %s", "127.0.0.1:8080")
    logging.getLogger("proxy.test").debug("not shown")
    assert capsys.readouterr().err == "graylane: INFO listening on 127.0.0.1:8080\n"
