"""File-descriptor exhaustion: a flood of connections that never send a byte, against a graylane
whose RLIMIT_NOFILE is 1024, must not lock out a real request."""

from __future__ import annotations

import resource
import shutil
import socket
import sys
import time

import pytest

from proxy.runtime.fdcap import connection_cap
from proxy.testing import request
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration

IDLE = 3000


def test_the_cap_leaves_room_for_upstream_connections():
    assert connection_cap(10_000, 1024) == (1024 - 64) // 2
    assert connection_cap(100, 1024) == 100
    assert connection_cap(10_000, 20) == 16


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs util-linux prlimit")
def test_idle_flood_beyond_the_descriptors_does_not_lock_out_a_real_request(backend, graylane):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 200:
        pytest.skip(f"this test process may open only {hard} descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE + 200), hard))
    origin = backend()
    command = ["prlimit", "--nofile=1024:1024", sys.executable, "-m", "proxy", "run", "-c", "{config}"]
    proxy = graylane(proxy_config(origin.endpoint, admin=True), command=command)
    idle = []
    try:
        for _ in range(IDLE):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((proxy.host, proxy.port))
            idle.append(sock)
        began = time.monotonic()
        assert request(proxy.host, proxy.port, "GET", "/real", timeout=5).status == 200
        assert time.monotonic() - began < 2.5
        stats = request(*proxy.admin_address, "GET", "/stats", timeout=5).json()
        assert stats["connections_evicted"] > 0
        assert stats["connection_cap_reached"] >= 1
        assert sum("the cap" in line for line in proxy.logs()) == stats["connection_cap_reached"]
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
