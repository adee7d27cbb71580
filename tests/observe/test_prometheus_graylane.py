"""A real Prometheus scrapes a real graylane's admin /metrics and answers PromQL about the canary.

The canary v2 is driven with a known number of 200 and 5xx answers (a header rule sends to it;
the backend's /status/CODE answers with CODE), the stable v1 with others; Prometheus must then
compute the canary's error ratio the test produced. Its fixtures come from
test_prometheus_scrape.py; without /usr/bin/prometheus this is skipped.
"""

from __future__ import annotations

import json

import pytest
from test_prometheus_scrape import PROMETHEUS, prometheus_server  # noqa: F401 (a fixture)

from proxy.testing import Backend, request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="prometheus is not installed (scripts/install-system-deps.sh)"
    ),
]

CANARY = {"X-Canary": "always"}
CANARY_ERROR_RATIO = (
    'sum(graylane_requests_total{version="v2",code=~"5.."}) / sum(graylane_requests_total{version="v2"})'
)


def canary_config(v1: Backend, v2: Backend) -> str:
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            "api": {"versions": {"v1": {"endpoints": [v1.endpoint]}, "v2": {"endpoints": [v2.endpoint]}}}
        },
        "routes": [
            {
                "name": "api",
                "service": "api",
                "rules": [{"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v2"}],
                "split": [{"version": "v1", "weight": 100}, {"version": "v2", "weight": 0}],
            }
        ],
        "admin": {"address": "127.0.0.1:0"},
    }
    return json.dumps(doc, indent=1) + "\n"


def test_prometheus_answers_the_canary_error_ratio_graylane_produced(backend, graylane, prometheus_server):  # noqa: F811
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(canary_config(v1, v2))

    def get(path: str, headers: dict[str, str] | None = None) -> str:
        resp = request(proxy.host, proxy.port, "GET", path, headers, timeout=10)
        return f"{resp.get('X-Backend-Version')} {resp.status}"

    answers = [get("/", CANARY) for _ in range(14)]
    answers += [get("/status/500", CANARY) for _ in range(4)] + [get("/status/503", CANARY) for _ in range(2)]
    answers += [get("/") for _ in range(30)] + [get("/status/500")]  # the stable version's own errors
    assert answers.count("v2 200") == 14 and answers.count("v2 500") == 4 and answers.count("v2 503") == 2
    assert answers.count("v1 200") == 30 and answers.count("v1 500") == 1

    # Traffic first, then the scraper: the first scrape already holds every answer.
    prometheus = prometheus_server(f"127.0.0.1:{proxy.admin_port}")

    assert prometheus.value(CANARY_ERROR_RATIO) == pytest.approx(6 / 20)
    assert prometheus.value('up{job="graylane"}') == 1
    v1_ratio = prometheus.value(
        'sum(graylane_requests_total{version="v1",code=~"5.."}) / sum(graylane_requests_total{version="v1"})'
    )
    assert v1_ratio == pytest.approx(1 / 31)
    assert prometheus.value('sum(graylane_request_duration_seconds_count{version="v2"})') == 20
    assert prometheus.value('graylane_requests_total{version="v2",code="503"}') == 2
