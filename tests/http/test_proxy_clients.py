"""Real-world clients through graylane: curl and wrk (skipped where they are not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from proxy.testing import pattern_bytes
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


@pytest.fixture
def curl() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.skip("curl is not installed")
    return path


def test_curl_get(curl, backend, graylane):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    out = subprocess.run(
        [curl, "-sS", "--max-time", "5", "-D", "-", f"http://{proxy.host}:{proxy.port}/via-curl?x=1"],
        capture_output=True,
        timeout=10,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert re.search(rb"(?im)^x-request-id: \S+", head)
    doc = json.loads(body)
    assert doc["target"] == "/via-curl?x=1"
    assert doc["headers"]["x-forwarded-proto"] == "http"


def test_curl_upload_and_download(curl, backend, graylane, tmp_path):
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    upload = tmp_path / "up.bin"
    upload.write_bytes(pattern_bytes(2_000_000))
    base = f"http://{proxy.host}:{proxy.port}"
    post = ["-sS", "--max-time", "10", "--data-binary", f"@{upload}", f"{base}/echo"]
    get = ["-sS", "--max-time", "10", f"{base}/chunked?n=8&size=1000"]
    out = subprocess.run(
        [curl, *post, "--next", *get],  # two transfers on one connection
        capture_output=True,
        timeout=15,
        check=True,
    ).stdout
    assert out == pattern_bytes(2_000_000) + pattern_bytes(8000)
    assert origin.connections_accepted == 1


@pytest.mark.slow
def test_wrk_short_run_has_no_errors(backend, graylane):
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed")
    origin = backend()
    proxy = graylane(proxy_config(origin.endpoint))
    result = subprocess.run(
        [wrk, "-t1", "-c8", "-d2s", f"http://{proxy.host}:{proxy.port}/bench"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "Non-2xx" not in report, report
    assert "Socket errors" not in report, report
    requests = int(re.search(r"(\d+) requests in", report).group(1))
    assert requests > 100, report
    assert proxy.running
