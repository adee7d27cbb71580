"""render_metrics(): the text exposition parsed back and checked, and linted by promtool."""

from __future__ import annotations

import math
import platform
import re
import shutil
import subprocess

import pytest

import proxy
from proxy.config.schema import Pool
from proxy.http.pool import PoolRegistry
from proxy.observe.counters import BOUNDS, NO_ROUTE, RequestCounters
from proxy.observe.metrics import CONTENT_TYPE, escape_label, render_metrics
from proxy.observe.stats import Stats

PROMTOOL = shutil.which("promtool", path="/usr/bin:/usr/local/bin")

# --- a small parser of the text format (0.0.4) ----------------------------------------------

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Exposition:
    def __init__(self, text: str) -> None:
        self.help: dict[str, str] = {}
        self.type: dict[str, str] = {}
        self.samples: list[tuple[str, dict[str, str], float]] = []
        assert text.endswith("\n"), "the exposition ends with a line feed"
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, _, doc = line[7:].partition(" ")
                assert name not in self.help, f"second HELP for {name}"
                self.help[name] = doc
            elif line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                assert name not in self.type, f"second TYPE for {name}"
                self.type[name] = kind
            elif line and not line.startswith("#"):
                found = _SAMPLE.fullmatch(line)
                assert found, f"not a sample line: {line!r}"
                name, labels, value, _ = found.groups()
                self.samples.append((name, parse_labels(labels or ""), float(value)))

    def family(self, sample_name: str) -> str:
        if sample_name in self.type:
            return sample_name
        for suffix in ("_bucket", "_count", "_sum"):
            base = sample_name.removesuffix(suffix)
            if base != sample_name and self.type.get(base) == "histogram":
                return base
        raise AssertionError(f"no TYPE for {sample_name}")

    def value(self, name: str, **labels: str) -> float:
        found = [value for sample, got, value in self.samples if sample == name and got == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
        return found[0]

    def series(self, name: str) -> list[dict[str, str]]:
        return [labels for sample, labels, _ in self.samples if sample == name]


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    at = 0
    while at < len(text):
        found = _LABEL.match(text, at)
        assert found, f"bad labels at {text[at:]!r}"
        name, raw, _ = found.groups()
        assert name not in labels
        labels[name] = re.sub(r"\\.", lambda m: _UNESCAPE[m.group(0)], raw)
        at = found.end()
    return labels


def test_parser_reads_escapes():
    assert parse_labels(r'a="x\"y",b="c\\d\ne"') == {"a": 'x"y', "b": "c\\d\ne"}


# --- fixtures ---------------------------------------------------------------------------------


def sample_counters() -> tuple[RequestCounters, int, int]:
    counters = RequestCounters()
    v1 = counters.slot("shop", "shop", "v1")
    v2 = counters.slot("shop", "shop", "v2")
    for _ in range(95):
        counters.record(v1, 200, 0.004, 100, 1000)
    for _ in range(5):
        counters.record(v1, 500, 0.2, 100, 10)
    for _ in range(80):
        counters.record(v2, 200, 0.02, 0, 500)
    for _ in range(20):
        counters.record(v2, 503, 12.0, 0, 0)
    counters.record(NO_ROUTE, 404, 0.0002, 0, 60)
    counters.connect_error("shop", "v2", "10.0.2.1:8080")
    counters.connect_error("shop", "v2", "10.0.2.1:8080")
    return counters, v1, v2


def sample_stats() -> Stats:
    stats = Stats()
    stats.upstream_timeouts = 4
    stats.retries = 2
    stats.pool_hits = 170
    stats.pool_misses = 30
    stats.reloads_ok = 3
    stats.reloads_failed = 1
    stats.count_error("UF")
    stats.count_error("UF")
    stats.count_error("UT")
    stats.count_rejected("431")
    return stats


def sample_pools(stats: Stats) -> PoolRegistry:
    pools = PoolRegistry(stats)
    first = pools.get("10.0.1.1", 8080, Pool())
    second = pools.get("10.0.2.1", 8080, Pool())
    first.active, second.active = 3, 1
    first.idle.extend([object(), object()])  # only counted
    second.idle.append(object())
    return pools


def render_sample(**extra: int) -> Exposition:
    counters, _, _ = sample_counters()
    stats = sample_stats()
    return Exposition(render_metrics(counters, stats, sample_pools(stats), extra).decode())


SHOP_V1 = {"route": "shop", "service": "shop", "version": "v1"}
SHOP_V2 = {"route": "shop", "service": "shop", "version": "v2"}
NOWHERE = {"route": "", "service": "", "version": ""}

# --- the checks -------------------------------------------------------------------------------


def test_every_family_has_help_and_type_and_follows_conventions():
    out = render_sample(client_connections=7, mirror_dropped=2)
    assert set(out.help) == set(out.type)
    for name, _, _ in out.samples:
        assert out.family(name).startswith("graylane_")
    for name, kind in out.type.items():
        assert kind in {"counter", "gauge", "histogram"}
        assert name.endswith("_total") == (kind == "counter"), name
    assert out.type["graylane_request_duration_seconds"] == "histogram"


def test_requests_by_route_version_and_code():
    out = render_sample()
    assert out.value("graylane_requests_total", code="200", **SHOP_V1) == 95
    assert out.value("graylane_requests_total", code="500", **SHOP_V1) == 5
    assert out.value("graylane_requests_total", code="200", **SHOP_V2) == 80
    assert out.value("graylane_requests_total", code="503", **SHOP_V2) == 20
    assert out.value("graylane_requests_total", code="404", **NOWHERE) == 1
    assert len(out.series("graylane_requests_total")) == 5


def buckets(out: Exposition, labels: dict[str, str]) -> dict[float, float]:
    """le -> cumulative count of the latency histogram of one (route, service, version), in order."""
    found = {}
    for sample, labels_of_sample, value in out.samples:
        got = dict(labels_of_sample)
        le = got.pop("le", None) if sample == "graylane_request_duration_seconds_bucket" else None
        if le is not None and got == labels:
            found[float(le)] = value
    return found


def test_duration_histogram_is_cumulative_and_consistent():
    out = render_sample()
    name = "graylane_request_duration_seconds"
    for labels, total in ((SHOP_V1, 95 * 0.004 + 5 * 0.2), (SHOP_V2, 80 * 0.02 + 20 * 12.0)):
        found = buckets(out, labels)
        assert list(found) == [*BOUNDS, math.inf]
        values = list(found.values())
        assert values == sorted(values)
        assert values[-1] == out.value(name + "_count", **labels) == 100
        assert out.value(name + "_sum", **labels) == pytest.approx(total)
    v1 = buckets(out, SHOP_V1)
    assert v1[0.0025] == 0 and v1[0.005] == 95 and v1[0.1] == 95 and v1[0.25] == 100
    v2 = buckets(out, SHOP_V2)
    assert v2[0.01] == 0 and v2[0.025] == 80 and v2[10.0] == 80 and v2[math.inf] == 100
    assert buckets(out, NOWHERE)[0.001] == 1


def test_body_bytes():
    out = render_sample()
    assert out.value("graylane_request_bytes_total", **SHOP_V1) == 100 * 100
    assert out.value("graylane_response_bytes_total", **SHOP_V1) == 95 * 1000 + 5 * 10
    assert out.value("graylane_response_bytes_total", **SHOP_V2) == 80 * 500
    assert out.value("graylane_response_bytes_total", **NOWHERE) == 60


def test_upstream_and_process_figures():
    out = render_sample()
    assert (
        out.value(
            "graylane_upstream_connect_errors_total", service="shop", version="v2", endpoint="10.0.2.1:8080"
        )
        == 2
    )
    assert out.value("graylane_upstream_timeouts_total") == 4
    assert out.value("graylane_upstream_retries_total") == 2
    assert out.value("graylane_pool_hits_total") == 170
    assert out.value("graylane_pool_misses_total") == 30
    assert out.value("graylane_upstream_connections", state="active") == 4
    assert out.value("graylane_upstream_connections", state="idle") == 3
    assert out.value("graylane_errors_total", flag="UF") == 2
    assert out.value("graylane_errors_total", flag="UT") == 1
    assert out.value("graylane_rejected_requests_total", reason="431") == 1
    assert out.value("graylane_config_reloads_total", result="ok") == 3
    assert out.value("graylane_config_reloads_total", result="failed") == 1
    info = {"version": proxy.__version__, "python": platform.python_version()}
    assert out.value("graylane_build_info", **info) == 1


def test_extra_figures_only_when_given():
    given = render_sample(client_connections=7, mirror_dropped=2)
    assert given.value("graylane_client_connections") == 7
    assert given.value("graylane_mirror_dropped_total") == 2
    absent = render_sample()
    assert "graylane_client_connections" not in absent.type
    assert "graylane_mirror_dropped_total" not in absent.type


def test_unknown_extra_is_refused():
    with pytest.raises(ValueError, match="mirror_droped"):
        render_metrics(RequestCounters(), Stats(), None, {"mirror_droped": 1})


def test_without_pools_there_is_no_connection_gauge():
    out = Exposition(render_metrics(RequestCounters(), Stats(), None).decode())
    assert "graylane_upstream_connections" not in out.type
    assert out.value("graylane_upstream_timeouts_total") == 0


def test_a_snapshot_renders_like_the_counters():
    counters, _, _ = sample_counters()
    stats = Stats()
    assert render_metrics(counters.snapshot(at=3.0), stats, None) == render_metrics(counters, stats, None)


def test_label_values_are_escaped():
    counters = RequestCounters()
    odd = ('say "hi"', "back\\slash", "two\nlines")
    slot = counters.slot(*odd)
    counters.record(slot, 200, 0.01, 0, 0)
    counters.connect_error('s"', "v\\", "e\n")
    stats = Stats()
    stats.count_error('F"\\\n')
    text = render_metrics(counters, stats, None).decode()
    out = Exposition(text)
    route, service, version = odd
    assert (
        out.value("graylane_requests_total", route=route, service=service, version=version, code="200") == 1
    )
    assert (
        out.value("graylane_upstream_connect_errors_total", service='s"', version="v\\", endpoint="e\n") == 1
    )
    assert out.value("graylane_errors_total", flag='F"\\\n') == 1
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_content_type_is_text_0_0_4():
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (scripts/install-system-deps.sh)")
def test_promtool_accepts_the_exposition():
    counters, _, _ = sample_counters()
    counters.slot("quiet", "shop", "v1")  # a slot without requests
    counters.slot('odd "route"\\', "shop", "v2")
    stats = sample_stats()
    body = render_metrics(
        counters, stats, sample_pools(stats), {"client_connections": 1, "mirror_dropped": 0}
    )
    done = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
