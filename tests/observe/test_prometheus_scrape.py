"""A real Prometheus scrapes render_metrics() and answers PromQL about it.

The exposition is served by a small HTTP server in this test; ``prometheus_server``
and ``metrics_server`` are separate so that the same checks can scrape a graylane
process instead. Prometheus is /usr/bin/prometheus (Debian package ``prometheus``,
installed by scripts/install-system-deps.sh); without it these tests are skipped.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.observe.counters import RequestCounters
from proxy.observe.metrics import CONTENT_TYPE, render_metrics
from proxy.observe.stats import Stats
from proxy.observe.window import histogram_quantile
from proxy.testing import free_port

PROMETHEUS = shutil.which("prometheus", path="/usr/bin:/usr/local/bin")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="prometheus is not installed (scripts/install-system-deps.sh)"
    ),
]

STARTUP_DEADLINE = 10.0  # seconds for Prometheus to be ready
SCRAPE_DEADLINE = 8.0  # seconds for the first scrape to be queryable (the scrape interval is 1 s)
POLL_EVERY = 0.1


class MetricsServer:
    """Serves ``body()`` as /metrics on 127.0.0.1 from a thread."""

    def __init__(self, body: Callable[[], bytes]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                content = body()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-server", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class PrometheusServer:
    """A Prometheus process scraping ``target`` every second, with its data in ``workdir``."""

    def __init__(self, workdir: Path, target: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "prometheus.log"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: graylane\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.args = [
            str(PROMETHEUS),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_DEADLINE
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after {STARTUP_DEADLINE}s:\n{self.log()}")
            time.sleep(POLL_EVERY)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector result of ``promql`` (an empty list when nothing matches yet)."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=2) as response:
            answer = json.load(response)
        assert answer["status"] == "success", answer
        assert answer["data"]["resultType"] == "vector", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float:
        """The single value of ``promql``, waiting until the scraped data makes it exist."""
        deadline = time.monotonic() + SCRAPE_DEADLINE
        while True:
            result = self.query(promql)
            if result:
                assert len(result) == 1, result
                return float(result[0]["value"][1])
            if time.monotonic() > deadline:
                targets = urllib.request.urlopen(self.url + "/api/v1/targets", timeout=2).read().decode()
                raise AssertionError(f"no result for {promql} after {SCRAPE_DEADLINE}s; targets: {targets}")
            time.sleep(POLL_EVERY)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def metrics_server() -> Iterator[Callable[[Callable[[], bytes]], MetricsServer]]:
    started: list[MetricsServer] = []

    def start(body: Callable[[], bytes]) -> MetricsServer:
        server = MetricsServer(body).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[[str], PrometheusServer]]:
    """Factory: ``prometheus_server("127.0.0.1:PORT")`` -> a ready Prometheus scraping that target."""
    started: list[PrometheusServer] = []

    def start(target: str) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusServer(workdir, target, free_port())
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def test_prometheus_computes_the_error_ratio_of_a_version(metrics_server, prometheus_server):
    counters = RequestCounters()
    v1 = counters.slot("shop", "shop", "v1")
    v2 = counters.slot("shop", "shop", "v2")
    for _ in range(95):
        counters.record(v1, 200, 0.004, 0, 100)
    for _ in range(5):
        counters.record(v1, 500, 0.04, 0, 100)
    for i in range(80):
        counters.record(v2, 200, 0.001 + i * 0.002, 0, 100)
    for _ in range(20):
        counters.record(v2, 503, 0.7, 0, 20)
    stats = Stats()
    server = metrics_server(lambda: render_metrics(counters, stats, None))

    prometheus = prometheus_server(server.address)

    ratio = prometheus.value(
        'sum(graylane_requests_total{version="v2",code=~"5.."}) / sum(graylane_requests_total{version="v2"})'
    )
    assert ratio == pytest.approx(0.2)
    assert prometheus.value('up{job="graylane"}') == 1
    v1_ratio = prometheus.value(
        'sum(graylane_requests_total{version="v1",code=~"5.."}) / sum(graylane_requests_total{version="v1"})'
    )
    assert v1_ratio == pytest.approx(0.05)
    # Prometheus reads the histogram as we do: its quantile of our buckets is ours.
    buckets = counters.snapshot().slots[v2].buckets
    for q in (0.5, 0.99):
        promql = f'histogram_quantile({q}, graylane_request_duration_seconds_bucket{{version="v2"}})'
        assert prometheus.value(promql) == pytest.approx(histogram_quantile(q, buckets))
    assert prometheus.value('graylane_response_bytes_total{version="v2"}') == 80 * 100 + 20 * 20
