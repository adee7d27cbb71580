"""``graylane status``: the /status document as tables (pure functions), and the command run
against a real graylane and against nothing."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from proxy.admin.client import AdminApiError, admin_from_config, base_url
from proxy.admin.table import VersionRow, render_status, route_views, watch_status
from proxy.errors import ConfigError
from proxy.testing import Backend, GraylaneProcess, free_port, request

SOURCE_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-admin-token"
WINDOW_DEADLINE = 6.0
POLL_EVERY = 0.05


def window(requests: int, errors: int, seconds: float = 10.0, p50: float | None = 0.002, p99=0.120):
    return {
        "seconds": seconds,
        "requests": requests,
        "rate": requests / seconds,
        "errors": errors,
        "error_ratio": errors / requests if requests else 0.0,
        "p50": p50 if requests else None,
        "p99": p99 if requests else None,
    }


def document(v1_window: Any = None, v2_window: Any = None, **extra: Any) -> dict[str, Any]:
    """A /status document as the admin API answers it (the fields the table reads)."""

    def version(stable: bool, endpoints: list[dict[str, Any]], live: Any) -> dict[str, Any]:
        return {"stable": stable, "labels": {}, "endpoints": endpoints, "serving": True, "last_window": live}

    up = {"address": "10.0.0.1:80", "healthy": True}
    down = {"address": "10.0.0.2:80", "healthy": False}
    return {
        "window_seconds": 60.0,
        "routes": [
            {
                "name": "shop",
                "service": "shop",
                "weights": {"v1": 75.0, "v2": 25.0},
                "rules": ["v2"],
                "sticky": "cookie:uid",
                "mirror": {"version": "v2", "percent": 5.0},
            }
        ],
        "services": {
            "shop": {
                "stable": "v1",
                "versions": {
                    "v1": version(True, [up, up], v1_window),
                    "v2": version(False, [up, down], v2_window),
                },
            }
        },
        "draining": False,
        **extra,
    }


def rendered(doc: dict[str, Any], width: int = 120, **kwargs: Any) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(render_status(doc, "http://127.0.0.1:9901", **kwargs))
    return console.file.getvalue()


# --- rows and tables (no sockets) --------------------------------------------------------------


def test_route_views_turn_the_document_into_rows():
    [view] = route_views(document(window(200, 0), window(40, 10, p50=0.0015, p99=0.31)))
    assert (view.name, view.service, view.rules, view.sticky, view.mirror) == (
        "shop",
        "shop",
        ["v2"],
        "cookie:uid",
        "5% to v2",
    )
    v1, v2 = view.rows
    assert v1 == VersionRow("v1", 75.0, True, False, 2, 2, 200, 20.0, 0.0, 2.0, 120.0)
    assert v2.version == "v2" and v2.weight == 25.0 and not v2.stable and v2.by_rule
    assert (v2.healthy, v2.endpoints, v2.requests) == (1, 2, 40)
    assert v2.error_pct == pytest.approx(25.0)
    assert v2.p50_ms == pytest.approx(1.5) and v2.p99_ms == pytest.approx(310.0)


def test_a_window_that_is_not_live_yet_has_no_figures():
    [view] = route_views(document())
    assert all(row.rate is None and row.error_pct is None and row.p99_ms is None for row in view.rows)
    text = rendered(document())
    assert "window fills" in text
    assert "75%" in text and "25% +rule" in text


def test_the_table_shows_every_column_of_every_version():
    text = rendered(document(window(200, 0), window(40, 10, p50=0.0015, p99=0.31)))
    lines = text.splitlines()
    header = next(line for line in lines if "version" in line)
    for column in ("weight", "stable", "endpoints", "req/s", "errors", "p50 ms", "p99 ms"):
        assert column in header
    v1 = next(line for line in lines if line.startswith("v1")).split()
    v2 = next(line for line in lines if line.startswith("v2")).split()
    assert v1 == ["v1", "75%", "yes", "2/2", "20.0", "0.0%", "2.0", "120.0"]
    assert v2 == ["v2", "25%", "+rule", "1/2", "4.0", "25.0%", "1.5", "310.0"]
    assert "route shop" in text and "sticky on cookie:uid" in text and "mirror 5% to v2" in text
    assert "last 10 s" in text


def test_a_version_without_requests_shows_dashes_and_draining_is_flagged():
    text = rendered(document(window(10, 0), window(0, 0), draining=True))
    v2 = next(line for line in text.splitlines() if line.startswith("v2")).split()
    assert v2[-4:] == ["0.0", "-", "-", "-"]
    assert "DRAINING" in text


def test_ejected_endpoints_are_not_healthy_and_a_fallback_is_shown():
    doc = document(window(10, 0), window(10, 10))
    v2 = doc["services"]["shop"]["versions"]["v2"]
    v2["endpoints"] = [{"address": "10.0.0.3:80", "healthy": True, "ejected": True}]
    v2["serving"] = False
    v2["falls_back_to"] = "v1"
    [view] = route_views(doc)
    assert (view.rows[1].healthy, view.rows[1].endpoints, view.rows[1].falls_back_to) == (0, 1, "v1")
    row = next(line for line in rendered(doc).splitlines() if line.startswith("v2"))
    assert "0/1 -> v1" in row


def test_the_table_fits_an_80_column_terminal():
    text = rendered(document(window(123456, 7), window(99, 98)), width=80)
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_watch_refreshes_and_keeps_the_last_figures_when_a_refresh_fails():
    answers = [document(window(10, 0), window(10, 1)), AdminApiError("cannot reach the admin API")]

    def fetch() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    console = Console(file=io.StringIO(), width=120, color_system=None)
    watch_status(fetch, console, 0.01, "src", document(), refreshes=2)
    assert answers == []
    text = console.file.getvalue()  # not a terminal: Live prints the last screen when it stops
    assert "cannot reach the admin API (showing the last answer)" in text
    assert "10.0%" in text  # the figures of the last good answer


# --- the admin address ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("127.0.0.1:9901", "http://127.0.0.1:9901"),
        ("0.0.0.0:9901", "http://127.0.0.1:9901"),
        ("[::]:9901", "http://[::1]:9901"),
        ("[::1]:80", "http://[::1]:80"),
        ("localhost:9901", "http://localhost:9901"),
        ("http://127.0.0.1:9901/", "http://127.0.0.1:9901"),
    ],
)
def test_base_url(address, url):
    assert base_url(address) == url


@pytest.mark.parametrize("address", ["9901", "127.0.0.1", "https://127.0.0.1:9901", "127.0.0.1:0", "::1:80"])
def test_base_url_refuses_what_is_not_host_port(address):
    with pytest.raises(ValueError):
        base_url(address)


def _write_config(tmp_path: Path, admin: dict[str, Any] | None) -> Path:
    doc: dict[str, Any] = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:8080"}],
        "services": {"api": {"versions": {"v1": {"endpoints": ["127.0.0.1:9000"]}}}},
        "routes": [{"name": "all", "service": "api"}],
    }
    if admin is not None:
        doc["admin"] = admin
    path = tmp_path / "graylane.json"
    path.write_text(json.dumps(doc))
    return path


def test_admin_from_config(tmp_path):
    path = _write_config(tmp_path, {"address": "127.0.0.1:9911", "token": "t0k"})
    assert admin_from_config(str(path)) == ("127.0.0.1:9911", "t0k")
    with pytest.raises(AdminApiError, match="no admin section"):
        admin_from_config(str(_write_config(tmp_path, None)))
    with pytest.raises(AdminApiError, match="port 0"):
        admin_from_config(str(_write_config(tmp_path, {"address": "127.0.0.1:0"})))
    path.write_text("version: 1\nlisteners: [")
    with pytest.raises(ConfigError):
        admin_from_config(str(path))


# --- the command against a real graylane --------------------------------------------------------


def run_status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "status", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=SOURCE_ROOT,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", **(env or {})},
    )


def canary_config(v1: Backend, v2: Backend, admin_address: str) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            "api": {"versions": {"v1": {"endpoints": [v1.endpoint]}, "v2": {"endpoints": [v2.endpoint]}}}
        },
        "routes": [
            {
                "name": "api",
                "service": "api",
                "rules": [{"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v2"}],
                "split": [{"version": "v1", "weight": 80}, {"version": "v2", "weight": 20}],
            }
        ],
        "admin": {"address": admin_address, "token": TOKEN},
    }
    return json.dumps(doc, indent=1) + "\n"


def wait_for_window(proxy: GraylaneProcess, expected: dict[str, tuple[int, int]]) -> None:
    """Until /status shows ``expected`` (version -> (requests, errors)); the window ticks each second."""
    deadline = time.monotonic() + WINDOW_DEADLINE
    while True:
        resp = request(
            *proxy.admin_address, "GET", "/status", {"Authorization": f"Bearer {TOKEN}"}, timeout=5
        )
        versions = resp.json()["services"]["api"]["versions"]
        seen = {
            name: (v["last_window"]["requests"], v["last_window"]["errors"]) if v["last_window"] else None
            for name, v in versions.items()
        }
        if seen == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/status shows {seen}, not {expected}")
        time.sleep(POLL_EVERY)


@pytest.mark.integration
def test_status_prints_the_live_table_of_a_running_graylane(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    admin_address = f"127.0.0.1:{free_port()}"
    config_path = tmp_path / "graylane.json"
    config_path.write_text(canary_config(v1, v2, admin_address))
    proxy = graylane(config_path)
    wait_for_window(proxy, {"v1": (0, 0), "v2": (0, 0)})

    for path in ["/"] * 4 + ["/status/503"]:
        request(proxy.host, proxy.port, "GET", path, {"X-Canary": "always"}, timeout=5)
    sent = {"v1": 0, "v2": 5}
    for _ in range(100):  # the 80/20 split: until 4 have landed on v1
        resp = request(proxy.host, proxy.port, "GET", "/", timeout=5)
        sent[resp.get("X-Backend-Version")] += 1
        if sent["v1"] == 4:
            break
    wait_for_window(proxy, {"v1": (4, 0), "v2": (sent["v2"], 1)})

    for args in (["--admin", admin_address, "--token", TOKEN], ["-c", str(config_path)]):
        result = run_status(*args)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"graylane status  http://{admin_address}")
        assert "route api" in result.stdout
        v1_row = next(line for line in lines if line.startswith("v1")).split()
        v2_row = next(line for line in lines if line.startswith("v2")).split()
        assert v1_row[:4] == ["v1", "80%", "yes", "1/1"]
        assert v2_row[:4] == ["v2", "20%", "+rule", "1/1"]
        assert float(v1_row[4]) > 0 and float(v2_row[4]) > 0  # req/s
        assert v1_row[5] == "0.0%"
        assert v2_row[5] == f"{100 / sent['v2']:.1f}%"
        for cell in v2_row[6:8]:  # p50, p99 in ms
            assert float(cell) >= 0


@pytest.mark.integration
def test_status_wants_the_token(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    admin_address = f"127.0.0.1:{free_port()}"
    graylane(canary_config(v1, v2, admin_address))
    result = run_status("--admin", admin_address)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "wants a valid token" in result.stderr
    from_env = run_status("--admin", admin_address, env={"GRAYLANE_ADMIN_TOKEN": TOKEN})
    assert from_env.returncode == 0, from_env.stderr
    assert "route api" in from_env.stdout


def test_status_says_clearly_when_the_admin_api_is_unreachable():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = run_status("--admin", address)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"graylane status: cannot reach the admin API at http://{address}/status: Connection refused"
    )
    assert "Traceback" not in result.stderr


def test_status_refuses_a_bad_address_and_a_config_without_admin(tmp_path):
    bad = run_status("--admin", "nowhere")
    assert bad.returncode == 1 and "has no port" in bad.stderr
    no_admin = run_status("-c", str(_write_config(tmp_path, None)))
    assert no_admin.returncode == 1 and "no admin section" in no_admin.stderr
