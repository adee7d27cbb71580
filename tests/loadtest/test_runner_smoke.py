"""The benchmark runner: its pure parts without sockets, then one short real run (skipped
without nginx or wrk)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import nginx, report, wrk
from loadtest.flows import VersionTally
from loadtest.noise import delay_share, noise_notes, noise_share, other_share
from loadtest.procs import core_times, parse_cpu_list, schedstat_delay_ns, stat_ticks
from loadtest.report import Run
from loadtest.runner import cpu_us_per_request, plan, rotated, versions_from_metrics
from loadtest.scenarios import GRAYLANE, NGINX, SCENARIOS, graylane_config, select

ROOT = Path(__file__).resolve().parents[2]

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/small
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.30ms    3.22ms  39.71ms   80.25%
    Req/Sec    16.00k     3.51k   22.12k    60.00%
  Latency Distribution
     50%  750.00us
     75%    6.18ms
     90%    9.57ms
     99%    1.20s
  159190 requests in 10.01s, 43.59MB read
Requests/sec:  15903.10
Transfer/sec:      4.35MB
"""


# --- wrk -----------------------------------------------------------------------------


def test_parse_wrk_output_converts_every_time_unit_to_milliseconds() -> None:
    result = wrk.parse_output(WRK_OUTPUT)
    assert result.requests == 159190
    assert result.seconds == pytest.approx(10.01)
    assert result.rps == pytest.approx(15903.10)
    assert result.p50_ms == pytest.approx(0.75)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.clean


def test_parse_wrk_output_counts_socket_errors_and_bad_statuses() -> None:
    text = WRK_OUTPUT.replace(
        "Requests/sec:",
        "  Socket errors: connect 1, read 2, write 3, timeout 4\n"
        "  Non-2xx or 3xx responses: 17\nRequests/sec:",
    )
    result = wrk.parse_output(text)
    assert (result.socket_errors, result.non_2xx) == (10, 17)
    assert not result.clean


def test_parse_wrk_output_refuses_output_without_latency_distribution() -> None:
    text = "\n".join(line for line in WRK_OUTPUT.splitlines() if "%" not in line or "Stdev" in line)
    with pytest.raises(wrk.WrkOutputError, match="50%"):
        wrk.parse_output(text)
    with pytest.raises(wrk.WrkOutputError):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_command_carries_the_scenario() -> None:
    argv = wrk.command(
        "http://127.0.0.1:1/post", duration=3, script=Path("/x/post.lua"), headers=["Connection: close"]
    )
    assert argv[:4] == ["wrk", "-t1", "-c64", "-d3s"]
    assert "--latency" in argv
    assert argv[argv.index("-H") + 1] == "Connection: close"
    assert argv[argv.index("-s") + 1] == "/x/post.lua"
    assert argv[-1] == "http://127.0.0.1:1/post"
    with pytest.raises(ValueError):
        wrk.command("http://127.0.0.1:1/", duration=0.5)  # type: ignore[arg-type]


def test_lua_scripts_post_4kib_and_cycle_1000_users() -> None:
    assert 'string.rep("x", 4096)' in wrk.POST_LUA
    assert "n % 1000 + 1" in wrk.CANARY_LUA and '"user_" .. i' in wrk.CANARY_LUA


# --- processes and figures -----------------------------------------------------------


def test_stat_ticks_reads_utime_and_stime_past_an_odd_command_name() -> None:
    fields = ["S"] + [str(i) for i in range(4, 53)]  # fields 3.. of proc(5); 14 -> "14", 15 -> "15"
    line = "1234 (we ird) (name)) " + " ".join(fields)
    assert stat_ticks(line) == 14 + 15


def test_core_times_and_the_share_other_work_took() -> None:
    proc_stat = "cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 0 10 80 0 0 0 0 0 0\ncpu1 100 5 45 300 20 10 15 5 0 0\n"
    assert core_times(proc_stat, [1]) == {"tasks": 150, "irq": 25, "steal": 5, "idle": 320}
    assert core_times(proc_stat, [0, 1])["tasks"] == 170
    core = {"tasks": 150, "irq": 25, "steal": 5, "idle": 320}
    assert other_share(core, known_ticks=120) == pytest.approx((30 + 5) / 500)
    assert other_share(core, known_ticks=200) == pytest.approx(5 / 500)  # never negative
    assert other_share({}, 1) is None
    assert parse_cpu_list("0") == [0] and parse_cpu_list("0-2,5") == [0, 1, 2, 5]


def test_noise_is_the_worst_cpu_group() -> None:
    before = "cpu0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0\n"
    # CPU0: 100 ticks, 60 of them tasks, of which wrk + backend used 50; CPU1: 100, tasks 90, the proxy 50.
    after = "cpu0 50 0 10 40 0 0 0 0\ncpu1 80 0 10 10 0 0 0 0\n"
    assert noise_share(before, after, [([0], 50), ([1], 50)]) == pytest.approx(0.4)
    assert noise_share(before, after, [([0, 1], 100)]) == pytest.approx(50 / 200)
    assert noise_share(before, before, [([0], 0)]) is None
    runs = [_run(0, NGINX, 1, 1.0), _run(0, GRAYLANE, 1, 1.0), _run(0, "direct", 1, None)]
    runs[0].noise, runs[1].noise = 0.1, 0.3
    assert delay_share(2_500_000_000, 10.0) == pytest.approx(0.25)
    assert delay_share(50_000_000_000, 10.0) == 1.0 and delay_share(1, 0.0) is None
    assert schedstat_delay_ns("962345 8523893 17\n") == 8523893
    (note,) = noise_notes(runs, max_noise=0.25)
    assert "a median 20% (max 30%)" in note and "1 run(s) stayed above 25%" in note
    assert noise_notes(runs[2:]) == []


def test_cpu_us_per_request() -> None:
    assert cpu_us_per_request(150, 50_000, ticks_per_second=100) == pytest.approx(30.0)
    assert cpu_us_per_request(5, 0) is None


def test_versions_from_metrics_adds_up_every_status_of_a_version() -> None:
    text = (
        "# HELP graylane_requests_total Requests answered, by status code.\n"
        'graylane_requests_total{route="r",service="api",version="v1",code="200"} 900\n'
        'graylane_requests_total{route="r",service="api",version="v1",code="502"} 3\n'
        'graylane_requests_total{code="200",route="r",service="api",version="v2"} 97\n'
        'graylane_request_bytes_total{route="r",service="api",version="v1"} 5\n'
    )
    assert versions_from_metrics(text) == {"v1": 903, "v2": 97}


def test_plan_interleaves_and_rotates_the_proxies_each_repetition() -> None:
    assert rotated(["a", "b", "c"], 1) == ["b", "c", "a"]
    assert rotated([], 3) == []
    small = select(["small"])
    order = plan(small, ("direct", "nginx", "graylane"), reps=3)
    firsts = [order[i][2] for i in (0, 3, 6)]
    assert firsts == ["direct", "nginx", "graylane"]
    assert sorted(t for _, _, t in order) == sorted(["direct", "nginx", "graylane"] * 3)


# --- configs -------------------------------------------------------------------------


def test_nginx_reference_proxy_keeps_upstream_connections_alive(tmp_path: Path) -> None:
    text = nginx.proxy_conf(tmp_path, "p", 8080, {"v1": 9101})
    for needle in (
        "keepalive 64;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "worker_processes 1;",
        "listen 127.0.0.1:8080",
    ):
        assert needle in text
    canary = nginx.proxy_conf(tmp_path, "p", 8080, {"v1": 9101, "v2": 9102}, canary=True, workers=2)
    assert "split_clients" in canary and "access_log" in canary and "worker_processes 2;" in canary


def test_graylane_configs_plain_and_canary(tmp_path: Path) -> None:
    by_key = {s.key: s for s in SCENARIOS}
    plain = json.loads(graylane_config(by_key["small"], 8080, {"v1": 9101, "v2": 9102}))
    assert plain["access_log"] == {"enabled": False}
    assert list(plain["services"]["api"]["versions"]) == ["v1"]
    log = tmp_path / "access.log"
    canary = json.loads(
        graylane_config(by_key["canary"], 8080, {"v1": 9101, "v2": 9102}, access_log=log, admin_port=9901)
    )
    route = canary["routes"][0]
    assert route["split"] == [{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}]
    assert route["sticky"] == {"header": "X-User-ID"}
    assert canary["access_log"]["path"] == str(log)
    assert canary["admin"]["address"] == "127.0.0.1:9901"
    assert json.loads(graylane_config(by_key["workers2"], 8080, {"v1": 1}))["workers"] == 2


def test_graylane_configs_pass_graylane_check(tmp_path: Path) -> None:
    by_key = {s.key: s for s in SCENARIOS}
    for key in ("small", "canary"):
        path = tmp_path / f"{key}.yaml"
        path.write_text(
            graylane_config(
                by_key[key], 8080, {"v1": 9101, "v2": 9102}, access_log=tmp_path / "a.log", admin_port=9901
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "proxy", "check", "-c", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


# --- results -------------------------------------------------------------------------


def _run(rep: int, target: str, rps: float, cpu: float | None, scenario: str = "small") -> Run:
    return Run(
        rep=rep,
        scenario=scenario,
        target=target,
        rps=rps,
        p50_ms=1.0 * rep + 1,
        p99_ms=10.0,
        requests=int(rps) * 10,
        seconds=10.0,
        cpu_us_per_req=cpu,
    )


def test_summarize_takes_medians_of_ratios_within_each_repetition() -> None:
    runs = [
        # nginx's speed moves between repetitions; graylane is 0.5x of it each time.
        _run(0, NGINX, 10_000, 20.0),
        _run(0, GRAYLANE, 5_000, 40.0),
        _run(1, NGINX, 20_000, 20.0),
        _run(1, GRAYLANE, 10_000, 40.0),
        _run(2, NGINX, 30_000, 20.0),
        _run(2, GRAYLANE, 15_000, 60.0),
    ]
    rows = report.summarize(runs, select(["small"]))
    by_target = {r.target: r for r in rows}
    graylane = by_target[GRAYLANE]
    assert graylane.reps == 3
    assert graylane.rps == 10_000
    assert graylane.rps_ratio == pytest.approx(0.5)  # the ratio of medians would say 0.5 too, by luck
    assert graylane.cpu_us_per_req == 40.0
    assert graylane.cpu_ratio == pytest.approx(2.0)
    assert by_target[NGINX].rps_ratio == pytest.approx(1.0)
    assert "direct" not in by_target  # not run and nothing to say about it: no row


def test_summarize_pairs_runs_by_repetition_not_by_position() -> None:
    runs = [_run(0, NGINX, 10_000, 20.0), _run(1, NGINX, 40_000, 20.0), _run(1, GRAYLANE, 20_000, 30.0)]
    (graylane,) = [r for r in report.summarize(runs, select(["small"])) if r.target == GRAYLANE]
    assert graylane.rps_ratio == pytest.approx(0.5)  # against repetition 1's nginx, not the median


def test_markdown_has_summary_details_machine_and_na_notes() -> None:
    runs = [_run(0, NGINX, 10_000, 20.0), _run(0, GRAYLANE, 6_000, 33.3)]
    scenarios = select(["small", "workers2"])
    notes = {("workers2", GRAYLANE): "n/a (multi-worker not implemented)"}
    rows = report.summarize(runs, scenarios, notes)
    settings = {
        "max_noise": 0.25,
        "threads": 1,
        "connections": 64,
        "duration": 10,
        "warmup": 1,
        "reps": 3,
        "load_cpus": "0",
        "proxy_cpus": "1",
    }
    text = report.render_markdown(
        rows,
        scenarios,
        date="2026-11-26 12:00 UTC",
        machine={"nproc": "2", "CPU": "AMD EPYC"},
        settings=settings,
        notes=["a note"],
    )
    assert "### Results of 2026-11-26 12:00 UTC" in text
    assert "nproc 2, CPU AMD EPYC" in text
    assert "| graylane | 0.60 (33.3 us) | n/a (multi-worker not implemented) |" in text
    assert "| small keep-alive GET | graylane | 6,000 | 0.60 |" in text
    assert "- a note" in text


def test_replace_section_between_markers_or_appended() -> None:
    page = f"# Title\n\nintro\n\n{report.BEGIN_MARKER}\nold table\n{report.END_MARKER}\n\nafter\n"
    updated = report.replace_section(page, "new table\n")
    assert "old table" not in updated and "new table" in updated
    assert updated.startswith("# Title") and updated.endswith("after\n")
    assert report.replace_section(updated, "new table\n") == updated
    appended = report.replace_section("# Title\n", "t")
    assert appended == f"# Title\n\n{report.BEGIN_MARKER}\nt\n{report.END_MARKER}\n"


def test_cpu_model_from_cpuinfo() -> None:
    assert report.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n") == "AMD EPYC 7B13"
    assert report.cpu_model("") == "?"


def test_version_tally_counts_flows_gray_misses_and_sticky_flips() -> None:
    tally = VersionTally()
    tally.record("gray", "v2", user_id="user_gray_1", gray=True)
    tally.record("gray", "v1", user_id="user_gray_1", gray=True)
    tally.record("sticky", "v1", user_id="user_1")
    tally.record("sticky", "v1", user_id="user_1")
    tally.record("sticky", "v2", user_id="user_1")
    tally.record("anonymous", None)
    assert tally.counts == {
        "gray": {"v2": 1, "v1": 1},
        "sticky": {"v1": 2, "v2": 1},
        "anonymous": {"(none)": 1},
    }
    assert (tally.gray_off, tally.flips) == (1, 1)
    master = VersionTally()
    master.merge(tally.export())
    master.merge(VersionTally().export())
    assert master.counts["sticky"] == {"v1": 2, "v2": 1} and master.flips == 1
    assert tally.counts == {}
    assert "sticky users who changed version: 1" in master.render()


def test_command_line_refuses_bad_values_before_running_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from loadtest.__main__ import main

    assert main(["--duration", "0", "--no-install"]) == 2
    assert main(["--scenarios", "small,nope", "--no-install"]) == 2
    assert main(["--targets", "haproxy", "--no-install"]) == 2
    assert "loadtest:" in capsys.readouterr().err


# --- one real run --------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("wrk") is None, reason="needs nginx and wrk"
)
def test_quick_run_of_one_scenario_writes_results(tmp_path: Path) -> None:
    targets = "direct,nginx,graylane" + (",aiohttp" if importlib.util.find_spec("aiohttp") else "")
    docs = tmp_path / "performance.md"
    docs.write_text(f"# Perf\n\n{report.BEGIN_MARKER}\n(none)\n{report.END_MARKER}\n")
    argv = [
        sys.executable,
        "-m",
        "loadtest",
        "--quick",
        "--duration",
        "1",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--scenarios",
        "small",
        "--targets",
        targets,
        "--results",
        str(tmp_path),
        "--docs",
        str(docs),
        "--no-install",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "latest.json").read_text())
    rows = {row["target"]: row for row in results["rows"]}
    assert set(rows) == set(targets.split(","))
    for target, row in rows.items():
        assert row["note"] == "", (target, row["note"], done.stderr)
        assert row["rps"] > 0 and row["p99_ms"] > 0
        assert (row["cpu_us_per_req"] is None) == (target == "direct")
    assert rows[NGINX]["rps_ratio"] == pytest.approx(1.0)
    assert results["machine"]["nproc"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "| small keep-alive GET | graylane |" in markdown
    assert markdown.strip() in docs.read_text() and "(none)" not in docs.read_text()
