"""Dot segments in the request path are refused: a route must see the path the upstream gets."""

from __future__ import annotations

import pytest

from proxy.http.downstream import has_dot_segment
from proxy.testing import request
from proxy.testing.process import proxy_config


@pytest.mark.parametrize(
    "path",
    [
        b"/a/../admin",
        b"/..",
        b"/a/./b",
        b"/a/%2e%2e/admin",
        b"/a/%2E%2e/x",
        b"/a/.%2e/x",
        b"/a/%2e/x",
        b"/a/..",
    ],
)
def test_dot_segments_are_found(path):
    assert has_dot_segment(path)


@pytest.mark.parametrize(
    "path", [b"/", b"/a/b.js", b"/.well-known/x", b"/a/..b/c", b"/a/%2fx", b"/v1.2/x", b"/a/...x"]
)
def test_ordinary_paths_pass(path):
    assert not has_dot_segment(path)


@pytest.mark.integration
def test_a_dot_segment_gets_400_and_never_reaches_the_upstream(backend, graylane):
    v1 = backend("v1")
    proxy = graylane(proxy_config([v1.endpoint]))
    for path in ("/public/../admin", "/public/%2e%2e/admin"):
        answer = request(proxy.host, proxy.port, "GET", path, timeout=10)
        assert answer.status == 400, path
        assert answer.json()["status"] == 400
    assert request(proxy.host, proxy.port, "GET", "/public/app.js", timeout=10).status == 200
    assert [r.path for r in v1.requests] == ["/public/app.js"]
