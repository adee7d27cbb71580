"""Builders for routing tests: a Config from a few dicts, a parsed request head from keywords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from proxy.config.schema import Config
from proxy.http.request import RequestHead

SERVICES = {
    "shop": {
        "versions": {
            "v1": {"endpoints": ["10.0.1.1:8080", "10.0.1.2:8080"]},
            "v2": {"endpoints": ["10.0.2.1:8080"]},
        }
    }
}


def build_config(routes: list[dict] | None = None, services: dict | None = None, **extra: Any) -> Config:
    """A Config with one listener; ``services`` defaults to ``shop`` (v1 stable, v2)."""
    data = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": SERVICES if services is None else services,
        "routes": routes if routes is not None else [{"name": "all", "service": "shop"}],
        **extra,
    }
    return msgspec.convert(data, Config)


def build_request(
    path: bytes = b"/",
    *,
    host: bytes | None = b"example.com",
    method: bytes = b"GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> RequestHead:
    """A RequestHead as the head parser gives it (header names lower-case)."""
    req = RequestHead()
    req.method = method
    req.path = path
    req.query = query
    req.target = path + (b"?" + query if query else b"")
    req.host = host
    req.headers = ([(b"host", host)] if host is not None else []) + list(headers or [])
    req.http_minor = 1
    req.content_length = -1
    req.chunked = False
    req.keep_alive = True
    req.upgrade = None
    req.expect_continue = False
    req.forward_headers = b"".join(name + b": " + value + b"\r\n" for name, value in req.headers)
    req.xff = None
    req.request_id = None
    return req


@pytest.fixture(scope="session")
def make_config() -> Callable[..., Config]:
    return build_config


@pytest.fixture(scope="session")
def make_request() -> Callable[..., RequestHead]:
    return build_request
