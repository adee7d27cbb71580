"""Flow control end to end: a slow reader holds the upstream back instead of filling graylane's memory."""

from __future__ import annotations

import socket

import pytest

from proxy.testing import RawClient, build_request, pattern_bytes
from proxy.testing.process import proxy_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GIB = 1 << 30
MIB = 1 << 20
STALLS = 3  # the client stops reading this many times
# ... and reads this much in between (192 MiB in all before reading on): more than the kernel
# buffers between graylane and the backend hold (up to tcp_rmem's 32 MiB and tcp_wmem's 4 MiB),
# so the backend must write again, and is held back again at the next stop.
BETWEEN_STALLS = 64 * MIB


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def _slow_reader(proxy) -> socket.socket:
    """A client socket with a small fixed receive buffer (no autotuning): it holds little itself."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    sock.settimeout(10)
    sock.connect((proxy.host, proxy.port))
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    for _ in range(1000):  # each recv waits at most the socket timeout
        if b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            return head, rest
        more = sock.recv(65536)
        assert more, f"closed before the head ended: {data!r}"
        data += more
    raise AssertionError("no response head")


def _drain(sock: socket.socket, size: int, buf: bytearray) -> bytes:
    """Read ``size`` bytes, keeping only the first few (the pattern check needs no more)."""
    view = memoryview(buf)
    got = 0
    first = b""
    while got < size:  # every pass reads something or raises (socket timeout, peer closed)
        n = sock.recv_into(view[: min(len(buf), size - got)])
        assert n, f"closed after {got} of {size} bytes"
        if not first:
            first = bytes(view[: min(n, 4096)])
        got += n
    return first


def _stalled_reads(origin, proxy, sock: socket.socket, buf: bytearray, pauses: int) -> int:
    """Stop reading until the backend itself is held back, sample graylane's memory, read on; repeat.
    ``pauses`` is the backend's count of write pauses from before the request was sent."""
    peak = 0
    for _ in range(STALLS):
        # The backend's write buffer filled: everything between it and this client is full too.
        origin.wait_until(lambda b, seen=pauses: b.write_pauses > seen, timeout=10)
        peak = max(peak, _rss(proxy.pid))
        pauses = origin.write_pauses
        _drain(sock, BETWEEN_STALLS, buf)
    return peak


def test_gigabyte_to_a_slow_reader_keeps_graylane_small(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as sock:
        sock.sendall(build_request("GET", "/warm", host="h"))
        _read_head(sock)  # the JSON body stays in the buffer: close the warm-up connection
    baseline = _rss(proxy.pid)
    buf = bytearray(MIB)
    with _slow_reader(proxy) as sock:
        pauses = origin.write_pauses
        sock.sendall(build_request("GET", f"/bytes?n={GIB}", host="h"))
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"\r\nContent-Length: %d" % GIB in head
        assert rest == pattern_bytes(len(rest))
        peak = _stalled_reads(origin, proxy, sock, buf, pauses)
        # 192 MiB went through; the rest is read at full speed and counted.
        read = len(rest) + STALLS * BETWEEN_STALLS
        _drain(sock, GIB - read, buf)
        sock.settimeout(1)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # not a byte more than Content-Length
    assert peak - baseline < 64 * MIB, f"graylane grew {(peak - baseline) / MIB:.0f} MiB"
    assert _rss(proxy.pid) - baseline < 64 * MIB


def test_slow_reader_that_leaves_early_costs_nothing(backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    baseline = _rss(proxy.pid)
    buf = bytearray(MIB)
    with _slow_reader(proxy) as sock:
        pauses = origin.write_pauses
        sock.sendall(build_request("GET", f"/bytes?n={GIB}", host="h"))
        _read_head(sock)
        peak = _stalled_reads(origin, proxy, sock, buf, pauses)
    # The client left with most of the gigabyte unsent: graylane drops the upstream side too.
    origin.wait_until(lambda b: b.connections_open == 0, timeout=5)
    assert peak - baseline < 64 * MIB
    with RawClient(proxy.host, proxy.port, timeout=5) as client:
        assert client.request("GET", "/still-here").status == 200
    assert _rss(proxy.pid) - baseline < 64 * MIB


def test_slow_upload_holds_the_client_back(graylane):
    """The other direction: an upstream that does not read makes graylane stop reading the client."""
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        proxy = graylane(proxy_config(f"127.0.0.1:{upstream.getsockname()[1]}"))
        baseline = _rss(proxy.pid)
        size = 256 * MIB
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as client:
            client.sendall(build_request("PUT", "/up", {"Content-Length": str(size)}, host="h"))
            upstream.settimeout(5)
            conn, _ = upstream.accept()
            with conn:
                # The upstream reads nothing: the client's sends must block long before 256 MiB.
                client.settimeout(1)
                chunk = b"u" * MIB
                sent = 0
                with pytest.raises(TimeoutError):
                    for _ in range(size // MIB):
                        client.sendall(chunk)
                        sent += len(chunk)
                assert sent < 64 * MIB
                assert _rss(proxy.pid) - baseline < 64 * MIB
