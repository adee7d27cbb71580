"""``writes``: the data plane's writes batched per loop iteration or made at once, same bytes either way."""

from __future__ import annotations

import asyncio
import signal

import msgspec
import pytest

from proxy.config import load_config
from proxy.config.schema import Config
from proxy.errors import ConfigError
from proxy.runtime.server import Server, immediate_writes
from proxy.testing import build_request, pattern_bytes
from proxy.testing.process import proxy_config

MODES = ["batched", "immediate"]


def config_with(**top: object) -> Config:
    return msgspec.json.decode(proxy_config("127.0.0.1:1", **top), type=Config)


@pytest.mark.parametrize(
    ("writes", "workers", "expected"),
    [
        ("auto", 1, False),
        ("auto", 2, True),
        ("batched", 4, False),
        ("immediate", 1, True),
    ],
)
def test_auto_batches_with_one_worker_and_writes_at_once_with_more(writes, workers, expected):
    assert immediate_writes(config_with(writes=writes, workers=workers)) is expected


def test_the_default_is_auto():
    assert config_with().writes == "auto"


@pytest.mark.integration
@pytest.mark.parametrize("writes", MODES)
def test_pipelined_requests_and_bodies_come_back_whole_and_in_order(writes, backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, writes=writes))
    client = raw_client(proxy.host, proxy.port, timeout=10)
    body = pattern_bytes(1024 * 1024 + 3)
    # The first is the slowest: writes that overtook each other would show it.
    client.send(
        build_request("GET", "/slow?delay=0.1", host="h")
        + build_request("POST", "/echo", {"Content-Type": "application/octet-stream"}, body, host="h")
        + build_request("GET", "/third", host="h")
    )
    first = client.read_response()
    second = client.read_response()
    third = client.read_response()
    assert first.json()["path"] == "/slow"
    assert second.body == body
    assert third.json()["path"] == "/third"
    assert [r.path for r in origin.requests] == ["/slow", "/echo", "/third"]


@pytest.mark.integration
def test_a_reload_switches_the_write_mode_on_open_connections(backend, graylane, raw_client):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint, writes="batched"))
    client = raw_client(proxy.host, proxy.port, timeout=5)
    assert client.request("GET", "/before").json()["path"] == "/before"
    proxy.write_config(proxy_config(origin.endpoint, writes="immediate"))
    mark = proxy.log_mark()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log("configuration reloaded", since=mark)
    for n in range(3):
        assert client.request("GET", f"/after/{n}").json()["path"] == f"/after/{n}"


def test_an_unknown_mode_is_refused_with_the_file_and_the_path(tmp_path):
    path = tmp_path / "graylane.yaml"
    path.write_text(proxy_config("127.0.0.1:1", writes="sometimes"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(path) in str(caught.value)
    assert "writes" in str(caught.value)


def test_the_server_applies_the_mode_at_start_and_on_reload(tmp_path):
    path = tmp_path / "graylane.yaml"
    path.write_text(proxy_config("127.0.0.1:1", writes="immediate"))

    async def modes() -> tuple[bool, bool]:
        server = Server(load_config(str(path)), str(path), asyncio.get_running_loop())
        at_start = server.ctx.immediate
        path.write_text(proxy_config("127.0.0.1:1", writes="batched"))
        assert server.reload() == []
        return at_start, server.ctx.immediate

    assert asyncio.run(modes()) == (True, False)
