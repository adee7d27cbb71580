"""The test backend, driven by the raw client over real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import proxy
from proxy.testing import Backend, BadResponse, RawClient, pattern_bytes, request

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture
def v1(backend):
    return backend("v1")


@pytest.fixture
def conn(v1, raw_client):
    return raw_client(*v1.address, timeout=5.0)


def test_default_answer_describes_the_request(v1, conn):
    resp = conn.request("POST", "/some/path?x=1", [("X-Mixed-Case", "a"), ("x-mixed-case", "b")], b"hello")
    assert resp.status == 200
    assert resp.get("X-Backend-Version") == "v1"
    assert resp.get("content-type") == "application/json"
    doc = resp.json()
    assert doc["version"] == "v1"
    assert doc["method"] == "POST"
    assert doc["path"] == "/some/path"
    assert doc["target"] == "/some/path?x=1"
    assert doc["headers"]["x-mixed-case"] == "a, b"
    assert doc["body_len"] == 5
    [seen] = v1.requests
    assert seen.method == "POST"
    assert seen.target == "/some/path?x=1"
    assert seen.path == "/some/path"
    assert seen.query == {"x": "1"}
    assert seen.body == b"hello"
    assert seen.http_version == "1.1"
    # headers kept in order, as sent, duplicates included
    assert seen.headers[1:3] == [("X-Mixed-Case", "a"), ("x-mixed-case", "b")]
    assert seen.header("X-MIXED-CASE") == "a"
    assert seen.header_values("x-mixed-case") == ["a", "b"]
    assert seen.header("absent", "none") == "none"


def test_keep_alive_reuses_one_connection(v1, conn):
    first = conn.request("GET", "/a")
    second = conn.request("GET", "/b")
    assert first.json()["connection"] == second.json()["connection"]
    assert [r.connection_id for r in v1.requests] == [1, 1]
    assert v1.connections_accepted == 1


def test_each_connection_gets_its_own_id(v1, raw_client):
    ids = {raw_client(*v1.address).request("GET", "/").json()["connection"] for _ in range(3)}
    assert ids == {1, 2, 3}
    assert v1.connections_accepted == 3


def test_pipelined_requests_are_answered_in_order(v1, conn):
    conn.send(b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.read_response().json()["path"] == "/slow"
    assert conn.read_response().json()["path"] == "/second"


def test_echo_returns_the_body(conn):
    body = bytes(range(256)) * 40
    resp = conn.request("POST", "/echo", {"Content-Type": "application/x-thing"}, body)
    assert resp.body == body
    assert resp.get("Content-Length") == str(len(body))
    assert resp.get("Content-Type") == "application/x-thing"


def test_chunked_request_body_is_accepted(v1, conn):
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    resp = conn.read_response()
    assert resp.body == b"hello world"
    assert v1.requests[0].body == b"hello world"


def test_chunked_response(conn):
    resp = conn.request("GET", "/chunked?n=5&size=3")
    assert resp.status == 200
    assert resp.chunked
    assert resp.get("Transfer-Encoding") == "chunked"
    assert resp.get("Content-Length") is None
    assert resp.body == pattern_bytes(15)
    assert resp.raw_body.count(b"3\r\n") == 5
    assert resp.raw_body.endswith(b"0\r\n\r\n")
    # the connection stays usable after a chunked body
    assert conn.request("GET", "/after").status == 200


def test_chunked_response_with_large_chunks(conn):
    resp = conn.request("GET", "/chunked?n=3&size=100000")
    assert resp.body == pattern_bytes(300_000)


def test_bytes_one_mebibyte(conn):
    resp = conn.request("GET", f"/bytes?n={MiB}")
    assert resp.get("Content-Length") == str(MiB)
    assert resp.body == pattern_bytes(MiB)


def test_bytes_respects_flow_control(v1, conn):
    """A client that does not read makes the backend pause instead of buffering the body."""
    size = 64 * MiB
    conn.send(b"GET /bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
    v1.wait_until(lambda b: b.write_pauses >= 1)
    resp = conn.read_response(keep_body=False, timeout=60)
    assert resp.body_length == size
    assert resp.body == b""
    assert v1.peak_write_buffer < 1024 * 1024  # the high-water mark plus one piece, not the body
    assert conn.request("GET", "/after").status == 200


def test_bytes_one_gibibyte(conn):
    conn.send(b"GET /bytes?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % (1024 * MiB))
    resp = conn.read_response(keep_body=False, timeout=120)
    assert resp.body_length == 1024 * MiB


def test_slow_answers_after_the_delay(conn):
    started = time.monotonic()
    assert conn.request("GET", "/slow?delay=0.3").status == 200
    assert time.monotonic() - started >= 0.3


def test_slow_does_not_block_other_connections(v1, raw_client):
    raw_client(*v1.address).send(b"GET /slow?delay=60 HTTP/1.1\r\nHost: a\r\n\r\n")
    v1.wait_for_requests(1)
    assert raw_client(*v1.address).request("GET", "/fast", timeout=10).status == 200


def test_slowbody_sends_head_first(conn):
    conn.send(b"GET /slowbody?delay=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    started = time.monotonic()
    head = conn.recv_some()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\n")  # the head alone: the body comes a second later
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    body = conn.read_exactly(length)
    assert time.monotonic() - started >= 0.5
    assert b'"path": "/slowbody"' in body


@pytest.mark.parametrize("code", [200, 201, 404, 418, 500, 503, 599])
def test_status_with_body(conn, code):
    resp = conn.request("GET", f"/status/{code}")
    assert resp.status == code
    assert resp.json()["status"] == code
    assert conn.request("GET", "/after").status == 200


@pytest.mark.parametrize("code", [204, 304])
def test_status_without_body(conn, code):
    resp = conn.request("GET", f"/status/{code}")
    assert resp.status == code
    assert resp.body == b""
    assert resp.get("Content-Length") is None
    # nothing stray on the connection: the next response parses
    assert conn.request("GET", "/after").json()["path"] == "/after"


@pytest.mark.parametrize(
    "path", ["/status/100", "/status/abc", "/status/2000", "/bytes?n=-1", "/slow?delay=x"]
)
def test_bad_parameters_are_400(conn, path):
    assert conn.request("GET", path).status == 400


def test_close_answers_then_closes(conn):
    resp = conn.request("GET", "/close")
    assert resp.status == 200
    assert resp.get("Connection") == "close"
    assert conn.is_closed()


def test_reset_aborts_with_rst(conn):
    conn.send(b"GET /reset HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(ConnectionResetError):
        conn.read_response()


def test_garbage_is_not_http(conn):
    conn.send(b"GET /garbage HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(BadResponse) as err:
        conn.read_response()
    assert err.value.raw == b"NOT HTTP\r\n\r\n"
    assert conn.is_closed()


def test_hang_never_answers(v1, conn):
    conn.send(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
    v1.wait_for_requests(1)
    with pytest.raises(TimeoutError):
        conn.read_response(timeout=0.3)
    assert not conn.is_closed(timeout=0.1)


def test_head_only_get_and_head(conn):
    got = conn.request("GET", "/head-only")
    assert got.get("Content-Length") == "11"
    assert got.body == b"hello world"
    head = conn.request("HEAD", "/head-only")
    assert head.get("Content-Length") == "11"
    assert head.body == b""
    # had the HEAD answer carried a body, this response would not parse
    assert conn.request("GET", "/after").json()["path"] == "/after"


def test_head_on_default_path_has_length_but_no_body(conn):
    head = conn.request("HEAD", "/x")
    assert int(head.get("Content-Length")) > 0
    assert head.body == b""
    assert conn.request("GET", "/after").status == 200


def test_early_hints_come_before_the_answer(conn):
    resp = conn.request("GET", "/early-hints")
    assert resp.status == 200
    [hint] = resp.interim
    assert hint.status == 103
    assert hint.get("Link") == "</style.css>; rel=preload; as=style"


def test_early_hints_not_sent_to_http10(conn):
    conn.send(b"GET /early-hints HTTP/1.0\r\n\r\n")
    resp = conn.read_response()
    assert resp.status == 200
    assert resp.interim == []


def test_websocket_upgrade_then_raw_echo(v1, conn):
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\nearly bytes"
    )
    resp = conn.read_response()
    assert resp.status == 101
    assert resp.get("Upgrade") == "websocket"
    assert conn.read_exactly(len(b"early bytes")) == b"early bytes"
    for payload in (b"\x81\x05hello", b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 100):
        conn.send(payload)
        assert conn.read_exactly(len(payload)) == payload
    conn.close()
    v1.wait_until(lambda b: b.connections_open == 0)


def test_other_upgrades_are_declined_and_the_connection_goes_on(conn):
    conn.send(
        b"GET /first HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert conn.read_response().json()["path"] == "/first"
    assert conn.read_response().json()["path"] == "/second"


def test_expect_100_continue(v1, conn):
    body = b"x" * 1000
    conn.send(
        b"PUT /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    interim = conn.read_response(return_interim=True)
    assert interim.status == 100
    assert v1.requests == []  # nothing complete before the body is sent
    conn.send(body)
    final = conn.read_response()
    assert final.status == 200
    assert final.json()["body_len"] == len(body)


def test_no_100_continue_without_expect(conn):
    resp = conn.request("PUT", "/upload", body=b"abc")
    assert resp.interim == []


def test_http10_closes_by_default(v1, conn):
    conn.send(b"GET /old HTTP/1.0\r\n\r\n")
    resp = conn.read_response()
    assert resp.status == 200
    assert resp.get("Connection") == "close"
    assert conn.is_closed()
    assert v1.requests[0].http_version == "1.0"


def test_http10_keep_alive(conn):
    conn.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    first = conn.read_response()
    assert first.get("Connection") == "keep-alive"
    conn.send(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert conn.read_response().json()["connection"] == first.json()["connection"]


def test_http10_chunked_path_is_close_delimited(conn):
    conn.send(b"GET /chunked?n=4&size=10 HTTP/1.0\r\n\r\n")
    resp = conn.read_response()
    assert not resp.chunked
    assert resp.get("Transfer-Encoding") is None
    assert resp.body == pattern_bytes(40)
    assert conn.is_closed()


def test_connection_close_from_client(conn):
    resp = conn.request("GET", "/x", {"Connection": "close"})
    assert resp.get("Connection") == "close"
    assert conn.is_closed()


def test_half_close_still_gets_the_answer(conn):
    conn.send(b"GET /slow?delay=0.1 HTTP/1.1\r\nHost: a\r\n\r\n")
    conn.shutdown_write()
    assert conn.read_response().status == 200
    assert conn.is_closed()


def test_bad_request_gets_400_and_close(conn):
    conn.send(b"NOT A REQUEST\r\n\r\n")
    assert conn.read_response().status == 400
    assert conn.is_closed()


def test_fail_rate_is_deterministic(backend, raw_client):
    server = backend("v2", fail_rate=0.5)
    client = raw_client(*server.address)
    statuses = [client.request("GET", "/").status for _ in range(6)]
    assert statuses == [200, 500, 200, 500, 200, 500]
    server.fail_rate = 0.0
    assert client.request("GET", "/").status == 200


def test_fail_rate_tenth(backend, raw_client):
    server = backend("v2", fail_rate=0.1)
    client = raw_client(*server.address)
    statuses = [client.request("GET", "/").status for _ in range(30)]
    assert [i for i, s in enumerate(statuses, 1) if s == 500] == [10, 20, 30]


def test_delay_option(backend, raw_client):
    server = backend("v1", delay=0.3)
    started = time.monotonic()
    assert raw_client(*server.address).request("GET", "/").status == 200
    assert time.monotonic() - started >= 0.3


def test_counts_connections(v1, raw_client):
    first = raw_client(*v1.address)
    second = raw_client(*v1.address)
    first.request("GET", "/")
    second.request("GET", "/")
    assert v1.connections_accepted == 2
    assert v1.connections_open == 2
    first.close()
    v1.wait_until(lambda b: b.connections_open == 1)


def test_wait_for_requests_and_clear(v1):
    done = threading.Event()

    def later() -> None:
        request(*v1.address, "GET", "/late")
        done.set()

    threading.Thread(target=later).start()
    assert v1.wait_for_requests(1)[0].path == "/late"
    assert done.wait(5)
    v1.clear()
    assert v1.requests == []
    with pytest.raises(TimeoutError):
        v1.wait_for_requests(1, timeout=0.1)


def test_record_body_limit(backend, raw_client):
    server = backend("v1", record_body_limit=10)
    client = raw_client(*server.address)
    resp = client.request("POST", "/", body=b"z" * 100)
    assert resp.json()["body_len"] == 100
    [seen] = server.requests
    assert seen.body == b"z" * 10
    assert seen.body_len == 100
    assert client.request("POST", "/echo", body=b"z" * 100).status == 413


def test_stop_closes_connections_and_refuses_new_ones(backend, raw_client):
    server = backend("v1")
    client = raw_client(*server.address)
    client.send(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
    server.wait_for_requests(1)
    server.stop()
    assert client.is_closed()
    with pytest.raises(ConnectionRefusedError):
        RawClient(*server.address, timeout=2)
    server.stop()  # twice is fine


def test_restart_binds_the_same_port(backend, raw_client):
    server = backend("v1")
    host, port = server.address
    server.stop()
    assert server.start() == (host, port)
    assert raw_client(host, port).request("GET", "/").status == 200


def test_context_manager():
    with Backend("ctx") as server:
        assert request(*server.address, "GET", "/").get("X-Backend-Version") == "ctx"
    with pytest.raises(ConnectionRefusedError):
        RawClient(*server.address, timeout=2)


def test_port_in_use_raises_on_start(v1):
    with pytest.raises(OSError):
        Backend("other", port=v1.port).start()


def test_runs_as_a_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.testing.backend", "--port", "0", "--name", "v9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(proxy.__file__).resolve().parents[1])},
    )
    try:
        readable, _, _ = select.select([proc.stdout], [], [], 20)
        assert readable, "no output from the backend process"
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on 127.0.0.1:")
        port = int(line.strip().rsplit(":", 1)[1])
        assert request("127.0.0.1", port, "GET", "/").get("X-Backend-Version") == "v9"
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
