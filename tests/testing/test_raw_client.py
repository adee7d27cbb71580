"""The raw client's response reading, against scripted bytes on a socket pair."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.testing import BadResponse, PeerClosed, RawClient, Response, build_request

RECV_SIZES = [1, 2, 7, 256 * 1024]  # 1 meets every split point of every message


@pytest.fixture
def pair():
    """(client end, peer end) of a connected Unix socket pair; the test writes as the server."""
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def client_for(sock: socket.socket, recv_size: int = 256 * 1024, timeout: float = 5.0) -> RawClient:
    return RawClient.from_socket(sock, timeout, recv_size=recv_size)


@pytest.mark.parametrize("recv_size", RECV_SIZES)
def test_content_length_responses_back_to_back(pair, recv_size):
    ours, peer = pair
    peer.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    )
    client = client_for(ours, recv_size)
    first = client.read_response()
    assert (first.status, first.reason, first.http_version) == (200, "OK", "HTTP/1.1")
    assert first.body == b"hello"
    assert first.body_length == 5
    assert first.get("x-a") == "1"
    assert first.get_all("X-A") == ["1", "2"]
    assert first.raw_head.endswith(b"\r\n\r\n")
    second = client.read_response()
    assert second.status == 404
    assert second.body == b""


@pytest.mark.parametrize("recv_size", RECV_SIZES)
def test_chunked_decoded_and_raw_kept(pair, recv_size):
    ours, peer = pair
    wire = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
    peer.sendall(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire + b"HTTP/1.1 204 No Content\r\n\r\n"
    )
    client = client_for(ours, recv_size)
    resp = client.read_response()
    assert resp.chunked
    assert resp.body == b"hello world"
    assert resp.body_length == 11
    assert resp.raw_body == wire
    assert resp.trailers == [("X-Checksum", "abc")]
    assert client.read_response().status == 204


def test_chunked_without_keeping_the_body(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    resp = client_for(ours).read_response(keep_body=False)
    assert (resp.body, resp.raw_body, resp.body_length) == (b"", b"", 3)


@pytest.mark.parametrize("recv_size", RECV_SIZES)
def test_close_delimited(pair, recv_size):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
    peer.shutdown(socket.SHUT_WR)
    client = client_for(ours, recv_size)
    resp = client.read_response()
    assert resp.body == b"until the end"
    assert client.is_closed(0.1)


def test_transfer_encoding_not_ending_in_chunked_is_close_delimited(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef")
    peer.shutdown(socket.SHUT_WR)
    assert client_for(ours).read_response().body == b"abcdef"


@pytest.mark.parametrize("recv_size", RECV_SIZES)
def test_interim_responses_are_collected(pair, recv_size):
    ours, peer = pair
    peer.sendall(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    resp = client_for(ours, recv_size).read_response()
    assert resp.status == 200
    assert [r.status for r in resp.interim] == [100, 103]
    assert resp.interim[1].get("Link") == "</a.css>"
    assert resp.body == b"ok"


def test_return_interim_stops_at_the_first(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    client = client_for(ours)
    assert client.read_response(return_interim=True).status == 100
    peer.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert client.read_response().status == 201


def test_101_is_final_and_raw_bytes_follow(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nraw after")
    client = client_for(ours)
    resp = client.read_response()
    assert resp.status == 101
    assert resp.body == b""
    assert client.read_exactly(9) == b"raw after"


def test_head_request_has_no_body(pair):
    ours, peer = pair
    peer.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    )
    client = client_for(ours)
    head = client.read_response(head_request=True)
    assert head.get("Content-Length") == "100"
    assert head.body == b""
    assert client.read_response().body == b"x"


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(pair, status):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 %d X\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny" % status)
    client = client_for(ours)
    assert client.read_response().body == b""
    assert client.read_response().body == b"y"


def test_empty_reason_and_http10(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.0 200\r\nContent-Length: 0\r\n\r\n")
    resp = client_for(ours).read_response()
    assert (resp.http_version, resp.status, resp.reason) == ("HTTP/1.0", 200, "")


@pytest.mark.parametrize(
    "wire",
    [
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ],
)
def test_bad_responses(pair, wire):
    ours, peer = pair
    peer.sendall(wire)
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(BadResponse):
        client_for(ours).read_response()


def test_closed_before_anything(pair):
    ours, peer = pair
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(PeerClosed) as err:
        client_for(ours).read_response()
    assert err.value.partial == b""


def test_closed_inside_the_head(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(PeerClosed) as err:
        client_for(ours).read_response()
    assert err.value.partial == b"HTTP/1.1 200 OK\r\nContent-Le"


@pytest.mark.parametrize("keep_body", [True, False])
def test_closed_inside_the_body(pair, keep_body):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(PeerClosed, match="3 of 10"):
        client_for(ours).read_response(keep_body=keep_body)


def test_closed_inside_a_chunked_body(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
    peer.shutdown(socket.SHUT_WR)
    with pytest.raises(PeerClosed):
        client_for(ours).read_response()


def test_timeout_is_a_deadline_for_the_whole_read(pair):
    ours, peer = pair
    client = client_for(ours, recv_size=1)
    peer.sendall(b"HTTP/1.1 200 OK\r\n")  # a head that never ends
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="bytes unread"):
        client.read_response(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2


def test_timeout_inside_a_body(pair):
    ours, peer = pair
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(TimeoutError, match="3 of 10"):
        client_for(ours).read_response(timeout=0.2)


def test_is_closed(pair):
    ours, peer = pair
    client = client_for(ours)
    assert not client.is_closed(0.05)
    peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    peer.close()
    assert client.is_closed(1.0)
    # bytes that arrived before the close are still there to read
    assert client.read_response().body == b"hi"


def test_is_closed_after_local_close(pair):
    ours, _ = pair
    client = client_for(ours)
    client.close()
    assert client.is_closed(0.1)


def test_read_until_closed_and_recv_some(pair):
    ours, peer = pair
    client = client_for(ours)
    peer.sendall(b"first")
    assert client.recv_some() == b"first"
    peer.sendall(b"second")
    peer.sendall(b" third")
    peer.shutdown(socket.SHUT_WR)
    assert client.read_until_closed() == b"second third"
    assert client.recv_some() == b""


def test_reset_by_peer_over_tcp():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = RawClient(*listener.getsockname()[:2], timeout=5.0)
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        with pytest.raises(ConnectionResetError):
            client.read_response()
        assert client.is_closed(0.1)
        client.close()


def test_request_over_tcp_sends_host_and_reads_the_answer():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        host, port = listener.getsockname()[:2]
        with RawClient(host, port, timeout=5.0) as client:
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                resp = client.request("POST", "/p", {"X-A": "1"}, b"body")
                sent = peer.recv(65536)
    assert resp.body == b"ok"
    assert (
        sent == f"POST /p HTTP/1.1\r\nHost: {host}:{port}\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nbody".encode()
    )


def test_build_request():
    assert build_request("GET", "/", host="h") == b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert build_request("GET", "/", [("host", "x")], host="h") == b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    assert build_request("POST", "/", body=b"ab") == b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
    chunked = build_request("POST", "/", {"Transfer-Encoding": "chunked"}, b"0\r\n\r\n")
    assert chunked == b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    dupes = build_request("GET", "/x", [("A", "1"), ("A", "2")], version="HTTP/1.0")
    assert dupes == b"GET /x HTTP/1.0\r\nA: 1\r\nA: 2\r\n\r\n"


def test_response_helpers():
    resp = Response(200, "OK", [("Content-Type", "application/json")], b'{"a": [1]}')
    assert resp.json() == {"a": [1]}
    assert resp.text == '{"a": [1]}'
    assert resp.get("CONTENT-TYPE") == "application/json"
    assert resp.get("missing", "d") == "d"
    assert resp.get_all("missing") == []


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    recv_size=st.sampled_from([1, 3, 64, 4096]),
    upper_hex=st.booleans(),
)
def test_any_chunking_decodes_to_the_same_body(chunks, recv_size, upper_hex):
    wire = b"".join((b"%X" if upper_hex else b"%x") % len(c) + b"\r\n" + c + b"\r\n" for c in chunks)
    wire += b"0\r\n\r\n"
    ours, peer = socket.socketpair()
    with ours, peer:
        peer.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
        resp = client_for(ours, recv_size).read_response()
    assert resp.body == b"".join(chunks)
    assert resp.raw_body == wire
