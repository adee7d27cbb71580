"""GraylaneProcess machinery, against tiny fake children (the real proxy is tested elsewhere)."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proxy.testing import GraylaneProcess, ProcessStartError, request
from proxy.testing.process import count_listeners

ONE_LISTENER = """\
version: 1
listeners:
  - address: 127.0.0.1:0
services: {}
"""

TWO_LISTENERS = """\
version: 1
listeners:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    name: second
services: {}
"""

# A stand-in for graylane: announces its listeners on stderr like the proxy does,
# answers SIGHUP with a log line, exits 0 on SIGTERM. argv[1] is the config path;
# the FAKE_* variables script it.
FAKE = textwrap.dedent(
    """
    import os, signal, sys, time
    config = sys.argv[1]
    say = lambda text: print(text, file=sys.stderr, flush=True)
    signal.signal(signal.SIGHUP, lambda *a: say("reloaded " + open(config).read().splitlines()[0]))
    if os.environ.get("FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    say("config bytes " + str(len(open(config).read())))
    say("env " + os.environ.get("FAKE_VALUE", "-"))
    print("on stdout", flush=True)
    if os.environ.get("FAKE_EXIT"):
        say("boom: cannot start")
        sys.exit(int(os.environ["FAKE_EXIT"]))
    for port in os.environ.get("FAKE_PORTS", "1234").split(","):
        if port:
            say("graylane: listening on 127.0.0.1:" + port)
    while True:
        signal.pause()
    """
)
FAKE_COMMAND = [sys.executable, "-c", FAKE, "{config}"]


@pytest.fixture
def started():
    procs: list[GraylaneProcess] = []

    def start(config: str = ONE_LISTENER, env=None, **opts) -> GraylaneProcess:
        opts.setdefault("command", FAKE_COMMAND)
        proc = GraylaneProcess(config, env, **opts)
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.stop()


def test_reads_the_port_from_the_log(started):
    proc = started(env={"FAKE_PORTS": "4321"})
    assert proc.port == 4321
    assert proc.ports == [4321]
    assert proc.address == ("127.0.0.1", 4321)
    assert proc.host == "127.0.0.1"
    assert proc.running
    assert "graylane: listening on 127.0.0.1:4321" in proc.logs()


def test_waits_for_every_listener(started):
    proc = started(TWO_LISTENERS, env={"FAKE_PORTS": "1111,2222"})
    assert proc.expected_listeners == 2
    assert proc.ports == [1111, 2222]


def test_times_out_when_a_listener_is_missing(started):
    began = time.monotonic()
    with pytest.raises(ProcessStartError, match="1 of 2") as err:
        started(TWO_LISTENERS, env={"FAKE_PORTS": "1111"}, start_timeout=0.5)
    assert time.monotonic() - began < 5
    assert "config bytes" in str(err.value)  # the captured output comes with the error


def test_timeout_stops_the_child():
    procs = []

    def keep(config=ONE_LISTENER, env=None, **opts):
        proc = GraylaneProcess(config, env, command=FAKE_COMMAND, **opts)
        procs.append(proc)
        return proc.start()

    with pytest.raises(ProcessStartError):
        keep(env={"FAKE_PORTS": ""}, start_timeout=0.3)
    [proc] = procs
    assert not proc.running
    assert proc.returncode == 0  # SIGTERM was enough
    assert not proc.workdir.exists()


def test_early_exit_raises_with_stderr_and_code(started):
    with pytest.raises(ProcessStartError) as err:
        started(env={"FAKE_EXIT": "3"})
    message = str(err.value)
    assert "code 3" in message
    assert "boom: cannot start" in message


def test_config_text_is_written_to_a_file(started):
    proc = started()
    proc.wait_for_log(f"config bytes {len(ONE_LISTENER)}")
    assert proc.config_path.read_text() == ONE_LISTENER
    assert proc.config_path.parent == proc.workdir


def test_config_by_path_is_used_in_place(started, tmp_path):
    path = tmp_path / "given.yaml"
    path.write_text(TWO_LISTENERS)
    for config in (path, str(path)):
        proc = started(config, env={"FAKE_PORTS": "1,2"})
        assert proc.config_path == path
        assert proc.ports == [1, 2]
        with pytest.raises(RuntimeError):
            proc.write_config("version: 1")


def test_env_is_passed_and_can_remove_variables(started, monkeypatch):
    monkeypatch.setenv("FAKE_VALUE", "inherited")
    assert started().wait_for_log(r"env (\S+)").group(1) == "inherited"
    assert started(env={"FAKE_VALUE": "given"}).wait_for_log(r"env (\S+)").group(1) == "given"
    assert started(env={"FAKE_VALUE": None}).wait_for_log(r"env (\S+)").group(1) == "-"


def test_stdout_is_kept_apart(started):
    proc = started()
    proc.wait_for_log("on stdout", stream="stdout")
    assert "on stdout" not in proc.logs()


def test_signal_and_wait_for_a_new_log_line(started):
    proc = started()
    mark = proc.log_mark()
    proc.write_config("# second config\n" + ONE_LISTENER)
    proc.send_signal(signal.SIGHUP)
    match = proc.wait_for_log(r"reloaded (.*)", since=mark)
    assert match.group(1) == "# second config"


def test_wait_for_log_since_skips_older_lines(started):
    proc = started()
    with pytest.raises(TimeoutError):
        proc.wait_for_log("config bytes", timeout=0.2, since=proc.log_mark())


def test_wait_for_log_gives_up_when_the_stream_ends(started):
    proc = started()
    assert proc.stop() == 0
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="stderr ended"):
        proc.wait_for_log("never logged", timeout=30)
    assert time.monotonic() - began < 5


def test_stop_escalates_to_sigkill(started):
    proc = started(env={"FAKE_IGNORE_TERM": "1"})
    assert proc.stop(timeout=0.3) == -signal.SIGKILL
    assert not proc.running


def test_wait_returns_the_exit_code(started):
    proc = started()
    with pytest.raises(TimeoutError):
        proc.wait(timeout=0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_context_manager_and_cleanup():
    with GraylaneProcess(ONE_LISTENER, command=FAKE_COMMAND) as proc:
        pid = proc.pid
        assert proc.port == 1234
        workdir = proc.workdir
    assert not proc.running
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, so the PID no longer names our child


def test_not_started_is_an_error():
    proc = GraylaneProcess(ONE_LISTENER, command=FAKE_COMMAND)
    with pytest.raises(RuntimeError):
        proc.pid  # noqa: B018
    with pytest.raises(RuntimeError):
        proc.port  # noqa: B018
    proc.stop()


def test_default_command_runs_the_proxy_module():
    proc = GraylaneProcess(ONE_LISTENER, extra_args=["--workers", "1"])
    try:
        assert proc.command == [
            sys.executable,
            "-m",
            "proxy",
            "run",
            "-c",
            str(proc.config_path),
            "--workers",
            "1",
        ]
        root = str(Path(__file__).resolve().parents[2])
        assert proc.env["PYTHONPATH"].split(os.pathsep)[0] == root
        assert proc.env["PYTHONUNBUFFERED"] == "1"
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("line", "address"),
    [
        ("graylane: listening on 127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("2025-01-01 INFO graylane: listening on 0.0.0.0:80 (main)", ("0.0.0.0", 80)),
        ('{"msg": "graylane: listening on [::1]:9000"}', ("::1", 9000)),
        ("graylane: listening on localhost:1", ("localhost", 1)),
    ],
)
def test_listening_line_shapes(line, address):
    match = GraylaneProcess.LISTENING.search(line)
    assert match is not None
    assert (match.group(1).strip("[]"), int(match.group(2))) == address


def test_count_listeners():
    assert count_listeners(ONE_LISTENER) == 1
    assert count_listeners(TWO_LISTENERS) == 2
    assert count_listeners('{"listeners": [{"address": "a:1"}, {"address": "b:2"}, {"address": "c:3"}]}') == 3
    toml = '[[listeners]]\naddress = "a:1"\n[[listeners]]\naddress = "b:2"\n'
    assert count_listeners(toml, ".toml") == 2
    assert count_listeners(": not yaml : [") == 1
    assert count_listeners("listeners: []") == 1


@pytest.mark.integration
def test_real_proxy_end_to_end(graylane, backend):
    """The fixtures together: a backend, the real proxy in front of it, a request through."""
    v1 = backend("v1")
    config = f"""\
version: 1
listeners:
  - address: 127.0.0.1:0
services:
  api:
    versions:
      v1:
        endpoints: [{v1.endpoint}]
routes:
  - name: all
    service: api
"""
    proc = graylane(config)
    assert proc.port > 0
    resp = request(proc.host, proc.port, "GET", "/through?x=1")
    assert resp.status == 200
    assert resp.get("X-Backend-Version") == "v1"
    assert v1.requests[0].target == "/through?x=1"
    assert proc.stop() == 0
