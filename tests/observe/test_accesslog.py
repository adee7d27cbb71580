"""The JSON access log: line contents, batching, writes, logrotate, bad bytes, stdout, pipes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import timeit
from typing import Any

import pytest
import uvloop

from proxy.config import schema
from proxy.errors import ConfigError, StartupError
from proxy.observe import accesslog
from proxy.observe.accesslog import AccessLog
from tests.observe.entries import T0, entry


class FakeLoop:
    """Records call_later; a test fires the timer itself instead of waiting for it."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Any) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def fire(self) -> None:
        """Run the one live timer, as the loop would once its delay has passed."""
        live = [t for t in self.timers if not t.cancelled and not t.fired]
        assert len(live) == 1, live
        live[0].fired = True
        live[0].callback()


class FakeTimer:
    def __init__(self, delay: float, callback: Any) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every os.write the access log makes, in order."""
    seen: list[bytes] = []

    def counting_write(fd: int, data: Any) -> int:
        seen.append(bytes(data))
        return os.write(fd, data)

    monkeypatch.setattr(accesslog, "_os_write", counting_write)
    return seen


def make_log(path: Any, loop: Any = None, **options: Any) -> AccessLog:
    return AccessLog(schema.AccessLog(path=None if path is None else str(path), **options), loop)


def read_lines(path: Any) -> list[dict]:
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


# --- line contents -------------------------------------------------------------------


def test_success_line_has_every_field(tmp_path):
    path = tmp_path / "access.log"
    log = make_log(path)
    log.log(entry())
    log.close()
    (line,) = read_lines(path)
    assert line == {
        "time": "2026-01-01T00:00:00.250Z",
        "request_id": "5f3a9c01000000a1",
        "client": "10.1.2.3",
        "method": "GET",
        "path": "/api/items",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 1234,
        "duration_ms": 2.345,
        "upstream_ms": 2.1,
        "route": "shop",
        "version": "v2",
        "endpoint": "10.0.2.1:8080",
        "labels": {"tier": "gold"},
        "sticky_hash": "00abcdef01234567",
        "flags": "-",
    }
    # Field order is part of the format (people read these lines).
    assert list(line) == [
        "time", "request_id", "client", "method", "path", "status", "bytes_in", "bytes_out",
        "duration_ms", "upstream_ms", "route", "version", "endpoint", "labels", "sticky_hash", "flags",
    ]  # fmt: skip


def test_error_lines(tmp_path):
    path = tmp_path / "access.log"
    log = make_log(path)
    # 502: the upstream refused the connection; no response bytes from it, no sticky key.
    log.log(
        entry(
            time_unix=T0 + 1.5,
            request_id=b"5f3a9c01000000a2",
            method=b"POST",
            path=b"/api/orders",
            status=502,
            bytes_in=321,
            bytes_out=117,
            duration=0.000812,
            upstream_duration=-1.0,
            labels=None,
            sticky_hash=-1,
            flags="UF",
        )
    )
    # 404: no route matched, so no route, version or endpoint.
    log.log(
        entry(
            time_unix=T0 + 2.0009,
            request_id=b"5f3a9c01000000a3",
            path=b"/nowhere",
            status=404,
            bytes_out=98,
            duration=0.000041,
            upstream_duration=-1.0,
            route="",
            version="",
            endpoint="",
            labels=None,
            sticky_hash=-1,
            flags="NR",
        )
    )
    # 504: the upstream did not answer in time; upstream_ms is the time spent waiting.
    log.log(
        entry(
            time_unix=T0 + 59.999,
            request_id=b"5f3a9c01000000a4",
            status=504,
            bytes_out=120,
            duration=30.000125,
            upstream_duration=30.0,
            sticky_hash=0,
            flags="UT",
        )
    )
    log.close()
    bad_gateway, not_found, timeout = read_lines(path)
    assert bad_gateway == {
        "time": "2026-01-01T00:00:01.750Z",
        "request_id": "5f3a9c01000000a2",
        "client": "10.1.2.3",
        "method": "POST",
        "path": "/api/orders",
        "status": 502,
        "bytes_in": 321,
        "bytes_out": 117,
        "duration_ms": 0.812,
        "upstream_ms": None,
        "route": "shop",
        "version": "v2",
        "endpoint": "10.0.2.1:8080",
        "labels": None,
        "sticky_hash": None,
        "flags": "UF",
    }
    assert not_found == {
        "time": "2026-01-01T00:00:02.250Z",
        "request_id": "5f3a9c01000000a3",
        "client": "10.1.2.3",
        "method": "GET",
        "path": "/nowhere",
        "status": 404,
        "bytes_in": 0,
        "bytes_out": 98,
        "duration_ms": 0.041,
        "upstream_ms": None,
        "route": None,
        "version": None,
        "endpoint": None,
        "labels": None,
        "sticky_hash": None,
        "flags": "NR",
    }
    assert timeout == {
        "time": "2026-01-01T00:01:00.249Z",
        "request_id": "5f3a9c01000000a4",
        "client": "10.1.2.3",
        "method": "GET",
        "path": "/api/items",
        "status": 504,
        "bytes_in": 0,
        "bytes_out": 120,
        "duration_ms": 30000.125,
        "upstream_ms": 30000.0,
        "route": "shop",
        "version": "v2",
        "endpoint": "10.0.2.1:8080",
        "labels": {"tier": "gold"},
        "sticky_hash": "0000000000000000",
        "flags": "UT",
    }


def test_sticky_hash_is_16_hex_digits(tmp_path):
    path = tmp_path / "access.log"
    log = make_log(path)
    for value in (-1, 0, 1, 0xDEADBEEF, (1 << 64) - 1):
        log.log(entry(sticky_hash=value))
    log.close()
    assert [line["sticky_hash"] for line in read_lines(path)] == [
        None,
        "0000000000000000",
        "0000000000000001",
        "00000000deadbeef",
        "ffffffffffffffff",
    ]


def test_time_is_rfc3339_utc_with_milliseconds_across_seconds(tmp_path):
    path = tmp_path / "access.log"
    log = make_log(path)
    for t in (0.0, 0.999, 1.0, 86_399.5, 951_782_400.007):  # the last: 2000-02-29
        log.log(entry(time_unix=t))
    log.close()
    assert [line["time"] for line in read_lines(path)] == [
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00.999Z",
        "1970-01-01T00:00:01.000Z",
        "1970-01-01T23:59:59.500Z",
        "2000-02-29T00:00:00.007Z",
    ]


def test_weird_bytes_never_break_the_json(tmp_path):
    path = tmp_path / "access.log"
    log = make_log(path)
    weird_path = b'/caf\xc3\xa9/"quoted"/back\\slash/\x00\x01\n\r\t\x7f\xff'
    log.log(entry(path=weird_path, method=b"G\xe9T", request_id=b'id"\n'))
    log.log(entry(path=b"/next"))
    log.close()
    data = path.read_bytes()
    assert data.count(b"\n") == 2  # a newline in a value is escaped, never a line break
    first, second = read_lines(path)
    assert first["path"] == weird_path.decode("ascii", "backslashreplace")
    assert first["path"].startswith('/caf\\xc3\\xa9/"quoted"/back\\slash/\x00\x01\n')
    assert first["method"] == "G\\xe9T"
    assert first["request_id"] == 'id"\n'
    assert second["path"] == "/next"


def test_malformed_entry_costs_only_its_own_line(tmp_path):
    path = tmp_path / "access.log"
    log = make_log(path)
    log.log(entry(path=b"/a"))
    log.log(entry(upstream_duration=None))  # a producer bug: None instead of -1
    log.log(entry(labels={"x": object()}))  # not JSON-encodable
    log.log(entry(path=b"/b"))
    log.close()
    assert [line["path"] for line in read_lines(path)] == ["/a", "/b"]
    assert log.lines_dropped == 2
    assert log.lines_written == 2


# --- batching ------------------------------------------------------------------------------


def test_nothing_is_written_before_the_flush_interval(tmp_path, writes):
    path = tmp_path / "access.log"
    loop = FakeLoop()
    log = make_log(path, loop, flush_interval=0.2)
    assert [t.delay for t in loop.timers] == [0.2]
    for i in range(10):
        log.log(entry(path=b"/%d" % i))
    assert writes == []
    assert path.read_bytes() == b""
    loop.fire()  # the interval has passed
    assert len(writes) == 1  # the whole batch in one write
    assert [line["path"] for line in read_lines(path)] == [f"/{i}" for i in range(10)]
    # The timer is re-armed, and an empty tick writes nothing.
    loop.fire()
    assert len(writes) == 1
    log.log(entry(path=b"/later"))
    loop.fire()
    assert len(writes) == 2
    assert read_lines(path)[-1]["path"] == "/later"
    log.close()
    assert all(t.cancelled or t.fired for t in loop.timers)


def test_max_batch_flushes_at_once_in_one_write(tmp_path, writes):
    path = tmp_path / "access.log"
    log = make_log(path, FakeLoop(), max_batch=4)
    for i in range(3):
        log.log(entry(path=b"/%d" % i))
    assert writes == []
    log.log(entry(path=b"/3"))
    assert len(writes) == 1
    assert writes[0].count(b"\n") == 4
    for i in range(4, 11):
        log.log(entry(path=b"/%d" % i))
    assert len(writes) == 2  # 8 reached: one more batch of 4; 3 are pending
    log.close()
    assert len(writes) == 3
    assert [line["path"] for line in read_lines(path)] == [f"/{i}" for i in range(11)]
    assert log.lines_written == 11


def test_timer_flushes_on_a_real_loop(tmp_path, monkeypatch):
    path = tmp_path / "access.log"
    loop = uvloop.new_event_loop()
    written = asyncio.Event()

    def write_and_signal(fd: int, data: Any) -> int:
        n = os.write(fd, data)
        written.set()
        return n

    monkeypatch.setattr(accesslog, "_os_write", write_and_signal)

    async def scenario() -> float:
        log = make_log(path, asyncio.get_running_loop(), flush_interval=0.05)
        start = loop.time()
        log.log(entry())
        await asyncio.wait_for(written.wait(), 5)
        elapsed = loop.time() - start
        log.close()
        return elapsed

    try:
        elapsed = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert elapsed >= 0.04  # not written at once: by the timer
    assert len(read_lines(path)) == 1


def test_close_flushes_and_later_entries_are_ignored(tmp_path, writes):
    path = tmp_path / "access.log"
    log = make_log(path, FakeLoop())
    log.log(entry())
    log.close()
    assert len(writes) == 1
    log.log(entry())
    log.flush()
    log.close()
    assert len(writes) == 1
    assert len(read_lines(path)) == 1


def test_disabled_writes_nothing(tmp_path, writes):
    path = tmp_path / "access.log"
    loop = FakeLoop()
    log = make_log(path, loop, enabled=False)
    for _ in range(1000):
        log.log(entry())
    log.flush()
    log.reopen()
    log.close()
    assert not path.exists()
    assert writes == []
    assert loop.timers == []


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="max_batch"):
        AccessLog(schema.AccessLog(max_batch=0, enabled=False))
    with pytest.raises(ConfigError, match="flush_interval"):
        AccessLog(schema.AccessLog(flush_interval=schema.Duration(0), enabled=False))


# --- files, logrotate, stdout, pipes -----------------------------------------------------


def test_appends_to_an_existing_file(tmp_path):
    path = tmp_path / "access.log"
    path.write_bytes(b'{"old":1}\n')
    log = make_log(path)
    log.log(entry())
    log.close()
    assert path.read_bytes().startswith(b'{"old":1}\n{"time":')


def test_a_file_that_cannot_be_opened_is_a_startup_error(tmp_path):
    with pytest.raises(StartupError, match="access_log.path: cannot open .*missing/access.log"):
        make_log(tmp_path / "missing" / "access.log")


def test_reopen_after_rename_like_logrotate(tmp_path):
    path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    log = make_log(path, FakeLoop())
    log.log(entry(path=b"/before"))
    log.flush()
    os.rename(path, rotated)
    log.log(entry(path=b"/pending-at-rotation"))
    log.reopen()  # SIGUSR1
    assert path.exists()
    log.log(entry(path=b"/after"))
    log.close()
    # What was pending when the signal came belongs to the old file; later lines to the new one.
    assert [line["path"] for line in read_lines(rotated)] == ["/before", "/pending-at-rotation"]
    assert [line["path"] for line in read_lines(path)] == ["/after"]


def test_reopen_failure_keeps_the_old_file(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "access.log"
    log = make_log(path)
    os.rename(path, tmp_path / "access.log.1")
    directory.rmdir()  # the path cannot be created again
    log.log(entry(path=b"/x"))
    log.reopen()
    log.log(entry(path=b"/y"))
    log.close()
    assert [line["path"] for line in read_lines(tmp_path / "access.log.1")] == ["/x", "/y"]


def test_write_errors_are_counted_not_raised(writes):
    log = make_log("/dev/full")
    log.log(entry())
    log.log(entry())
    log.flush()  # ENOSPC
    assert log.write_errors == 1
    assert log.lines_dropped == 2
    assert log.lines_written == 0
    log.close()


@pytest.mark.parametrize("path", [None, "-"])
def test_stdout(path, capfd):
    log = AccessLog(schema.AccessLog(path=path))
    log.log(entry())
    log.close()
    out = capfd.readouterr().out
    assert json.loads(out)["request_id"] == "5f3a9c01000000a1"
    assert out.endswith("\n")


def test_stdout_without_a_file_descriptor(capsys):
    log = AccessLog(schema.AccessLog())
    log.log(entry())
    log.close()
    assert json.loads(capsys.readouterr().out)["status"] == 200


def test_pipe_gets_whole_lines_of_at_most_pipe_buf_bytes(tmp_path, writes):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = make_log(fifo)
        assert stat.S_ISFIFO(os.fstat(log._fd).st_mode)
        count = 100  # ~35 KB: more than PIPE_BUF, less than a pipe's capacity
        for i in range(count):
            log.log(entry(path=b"/%d" % i))
        log.flush()
        assert len(writes) > 1
        for piece in writes:
            assert len(piece) <= accesslog.PIPE_BUF
            assert piece.endswith(b"\n")
        data = os.read(reader, 1 << 20)
        log.close()
    finally:
        os.close(reader)
    assert [json.loads(line)["path"] for line in data.splitlines()] == [f"/{i}" for i in range(count)]


def test_full_non_blocking_pipe_keeps_the_rest_for_the_next_flush(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = make_log(fifo)
        os.set_blocking(log._fd, False)
        count = 1000  # ~350 KB: more than a pipe holds
        for i in range(count):
            log.log(entry(path=b"/%d" % i))
        log.flush()  # must not block
        assert 0 < log.lines_written < count
        received = b""
        for _ in range(1000):  # bounded: drain the pipe, flush again, until every line is through
            try:
                received += os.read(reader, 1 << 20)
            except BlockingIOError:
                pass
            if log.lines_written == count:
                break  # the read above took the last flush's bytes
            log.flush()
        log.close()
    finally:
        os.close(reader)
    assert log.lines_dropped == 0
    assert [json.loads(line)["path"] for line in received.splitlines()] == [f"/{i}" for i in range(count)]


# --- cost ----------------------------------------------------------------------------------


def test_cost_is_reported(tmp_path, capsys):
    """The per-request cost, measured and printed (not asserted: machines differ)."""
    log = make_log(tmp_path / "access.log", max_batch=1 << 30)
    e = entry()
    number = 100_000
    append = min(timeit.repeat(lambda: log.log(e), number=number, repeat=5)) / number
    log._pending.clear()
    batch = [entry(time_unix=T0 + i * 0.0007) for i in range(512)]
    fmt = min(timeit.repeat(lambda: log.format(batch), number=20, repeat=5)) / 20 / len(batch)
    log.close()
    with capsys.disabled():
        print(f"\naccess log cost: log() {append * 1e9:.0f} ns; format {fmt * 1e9:.0f} ns per line")
