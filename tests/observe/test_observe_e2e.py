"""graylane's observability through a real process: /metrics, promtool, the access log, traceparent.

One shape of config serves every test here (``observed_config``): a stable v1 and a canary v2
behind route ``api`` (host ``api.test``, a 50/50 split sticky on X-User-ID, a header rule and a
label rule sending to v2), a route ``dead`` (host ``dead.test``) whose only endpoint refuses
connections, and the admin API on 127.0.0.1:0. Any other host matches no route (404).

What a test sent is counted on the client side (each answer names the version that served it
in ``X-Backend-Version``) and compared with what graylane reports.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy.testing import Backend, GraylaneProcess, Response, free_port, poll_until, request

pytestmark = pytest.mark.integration

ACCESS_LOG_FIELDS = [
    "time",
    "request_id",
    "client",
    "method",
    "path",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "upstream_ms",
    "route",
    "version",
    "endpoint",
    "labels",
    "sticky_hash",
    "flags",
]
POLL_DEADLINE = 5.0  # seconds for a file written by graylane's flush timer to show a line
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

Key = tuple[str, str, str]  # (route, service, version) as graylane labels a request
NO_ROUTE: Key = ("", "", "")
DEAD: Key = ("dead", "dead", "v1")


# --- config and traffic ---------------------------------------------------------------


def observed_config(v1: Backend, v2: Backend, dead_port: int, **top: Any) -> str:
    """The config every test here runs (see the module docstring); ``top`` adds/replaces sections."""
    doc: dict[str, Any] = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": {
            "api": {"versions": {"v1": {"endpoints": [v1.endpoint]}, "v2": {"endpoints": [v2.endpoint]}}},
            "dead": {"versions": {"v1": {"endpoints": [f"127.0.0.1:{dead_port}"]}}},
        },
        "routes": [
            {"name": "dead", "service": "dead", "match": {"host": ["dead.test"]}},
            {
                "name": "api",
                "service": "api",
                "match": {"host": ["api.test"]},
                "rules": [
                    {"match": {"headers": {"X-Canary": {"exact": "always"}}}, "version": "v2"},
                    {"match": {"labels": {"cohort": {"exact": "beta"}}}, "version": "v2"},
                ],
                "split": [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}],
                "sticky": {"header": "X-User-ID"},
            },
        ],
        "admin": {"address": "127.0.0.1:0"},
        **top,
    }
    return json.dumps(doc, indent=1) + "\n"


def send(
    proxy: GraylaneProcess,
    path: str,
    host: str = "api.test",
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    body: bytes | None = None,
) -> Response:
    return request(proxy.host, proxy.port, method, path, {"Host": host, **(headers or {})}, body, timeout=10)


def key_of(response: Response, host: str) -> Key:
    """The (route, service, version) graylane should have counted ``response`` under."""
    if host == "api.test":
        version = response.get("X-Backend-Version")
        assert version in ("v1", "v2"), response
        return ("api", "api", version)
    return DEAD if host == "dead.test" else NO_ROUTE


def wire_size(response: Response) -> int:
    """Bytes of ``response`` as they came on the wire (graylane counts head and body)."""
    return len(response.raw_head) + len(response.raw_body)


# --- the Prometheus text format ------------------------------------------------------------

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def parse_metrics(text: str) -> Samples:
    """``{metric name: {frozenset of (label, value): value}}`` of every sample line."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        assert match is not None, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        pairs = frozenset(_LABEL.findall(labels or ""))
        assert pairs not in samples.setdefault(name, {}), f"duplicate sample: {line!r}"
        samples[name][pairs] = float(value)
    return samples


def by_key(samples: Samples, name: str, *extra: str) -> dict[tuple[str, ...], float]:
    """One metric's samples keyed by (route, service, version, *extra labels)."""
    out = {}
    for pairs, value in samples.get(name, {}).items():
        labels = dict(pairs)
        out[tuple(labels[n] for n in ("route", "service", "version", *extra))] = value
    return out


def scrape(proxy: GraylaneProcess) -> tuple[str, Samples]:
    resp = request(*proxy.admin_address, "GET", "/metrics", timeout=10)
    assert resp.status == 200
    assert resp.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    return resp.text, parse_metrics(resp.text)


# --- waiting for files graylane writes -----------------------------------------------------


def poll(what: str, check: Callable[[], Any], deadline: float = POLL_DEADLINE) -> Any:
    """``check()`` once it is truthy (files graylane writes: the file system has no event)."""
    return poll_until(check, deadline, what)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    # Only whole lines count: a batch is one write, but the read may race it.
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_for_lines(path: Path, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]]:
        lines = read_lines(path)
        return lines if len(lines) >= count else []

    return poll(f"{count} access log lines in {path}", enough)


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_count_what_was_sent_per_version_code_and_bytes(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    dead_port = free_port()
    proxy = graylane(observed_config(v1, v2, dead_port))

    traffic: list[tuple[str, str, dict[str, str], bytes | None]] = []  # (host, path, headers, body)
    traffic += [("api.test", "/", {}, None)] * 20
    traffic += [("api.test", "/status/500", {}, None)] * 6
    traffic += [("api.test", "/status/503", {}, None)] * 4
    traffic += [("api.test", "/status/404", {}, None)] * 3
    traffic += [("api.test", "/echo", {}, b"x" * 1000)] * 2
    traffic += [("api.test", "/slow?delay=0.3", {"X-Canary": "always"}, None)]
    traffic += [("dead.test", "/", {}, None)] * 3
    traffic += [("nowhere.test", "/", {}, None)] * 2

    codes: Counter[tuple[str, str, str, str]] = Counter()
    sent_bytes: Counter[Key] = Counter()
    got_bytes: Counter[Key] = Counter()
    for host, path, headers, body in traffic:
        resp = send(proxy, path, host, headers, method="POST" if body else "GET", body=body)
        key = key_of(resp, host)
        codes[(*key, str(resp.status))] += 1
        sent_bytes[key] += len(body or b"")
        got_bytes[key] += wire_size(resp)
    assert codes[(*DEAD, "502")] == 3 and codes[(*NO_ROUTE, "404")] == 2
    assert {key[2] for key in codes if key[0] == "api"} == {"v1", "v2"}  # the split used both

    _, samples = scrape(proxy)

    assert by_key(samples, "graylane_requests_total", "code") == dict(codes)
    requests_per_key: Counter[Key] = Counter()
    for (route, service, version, _), count in codes.items():
        requests_per_key[(route, service, version)] += count

    buckets = by_key(samples, "graylane_request_duration_seconds_bucket", "le")
    counts = by_key(samples, "graylane_request_duration_seconds_count")
    sums = by_key(samples, "graylane_request_duration_seconds_sum")
    assert set(counts) == set(requests_per_key)
    for key, requests in requests_per_key.items():
        series = sorted(
            ((float(le), value) for (*k, le), value in buckets.items() if tuple(k) == key),
            key=lambda item: item[0],
        )
        assert series[-1][0] == float("inf")
        values = [value for _, value in series]
        assert values == sorted(values), f"{key}: buckets are not cumulative: {series}"
        assert values[-1] == counts[key] == requests, key
    slow = ("api", "api", "v2")
    le_025 = buckets[(*slow, "0.25")]
    assert counts[slow] - le_025 >= 1, "the 0.3 s request must land above the 0.25 bucket"
    assert sums[slow] >= 0.3

    assert by_key(samples, "graylane_request_bytes_total") == {k: sent_bytes[k] for k in requests_per_key}
    assert by_key(samples, "graylane_response_bytes_total") == {k: got_bytes[k] for k in requests_per_key}

    connect_errors = {
        tuple(dict(pairs)[n] for n in ("service", "version", "endpoint")): value
        for pairs, value in samples["graylane_upstream_connect_errors_total"].items()
    }
    assert connect_errors == {("dead", "v1", f"127.0.0.1:{dead_port}"): 3}
    errors = {dict(pairs)["flag"]: value for pairs, value in samples["graylane_errors_total"].items()}
    assert errors == {"UF": 3, "NR": 2}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (package prometheus)")
def test_promtool_accepts_the_metrics_of_a_running_graylane(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(observed_config(v1, v2, free_port()))
    for host, path in [("api.test", "/"), ("api.test", "/status/500"), ("dead.test", "/"), ("x.test", "/")]:
        send(proxy, path, host)
    text, samples = scrape(proxy)
    assert samples["graylane_requests_total"]  # there is something to check
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    # The same check must catch a broken exposition (so the one above means something).
    broken = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text.replace("# TYPE graylane_requests_total counter", "").encode() + b'bad{a="1" 2\n',
        capture_output=True,
        timeout=30,
    )
    assert broken.returncode != 0


# --- the access log ---------------------------------------------------------------------------


def test_access_log_has_one_complete_line_per_request(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    dead_port = free_port()
    log_path = tmp_path / "access.log"
    proxy = graylane(
        observed_config(
            v1,
            v2,
            dead_port,
            access_log={"path": str(log_path), "flush_interval": "50ms"},
            upstream={"response_head_timeout": "300ms"},
        )
    )
    metadata = {"X-Request-Metadata": json.dumps({"cohort": "ga"})}
    sent = [
        ("api.test", "/ok?q=1", {"X-User-ID": "alice", **metadata}, None),
        ("api.test", "/echo", {"X-Canary": "always"}, b"0123456789"),
        ("dead.test", "/refused", {}, None),
        ("nowhere.test", "/unrouted", {}, None),
        ("api.test", "/hang", {"X-Canary": "always"}, None),
    ]
    answers = []
    for host, path, headers, body in sent:
        answers.append(send(proxy, path, host, headers, method="POST" if body else "GET", body=body))
    assert [r.status for r in answers] == [200, 200, 502, 404, 504]

    lines = wait_for_lines(log_path, len(sent))
    assert len(lines) == len(sent)
    now = datetime.now(UTC)
    for line, resp, (_, path, _, body) in zip(lines, answers, sent, strict=True):
        assert list(line) == ACCESS_LOG_FIELDS, line
        assert line["request_id"] == resp.get("X-Request-ID") and line["request_id"]
        assert line["status"] == resp.status
        assert line["client"] == "127.0.0.1"
        assert line["method"] == ("POST" if body else "GET")
        assert line["path"] == path.partition("?")[0]
        assert line["bytes_in"] == len(body or b"")
        assert line["bytes_out"] == wire_size(resp)
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        logged = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((now - logged).total_seconds()) < 60

    ok, echo, refused, unrouted, hung = lines
    assert (
        ok["flags"] == "-" and ok["route"] == "api" and ok["version"] == answers[0].get("X-Backend-Version")
    )
    assert ok["endpoint"] == {"v1": v1.endpoint, "v2": v2.endpoint}[ok["version"]]
    assert ok["labels"] == {"cohort": "ga"}
    assert re.fullmatch(r"[0-9a-f]{16}", ok["sticky_hash"]), ok
    assert ok["upstream_ms"] is not None and 0 <= ok["upstream_ms"] <= ok["duration_ms"]
    # A rule chose v2: no split, so no sticky hash.
    assert (echo["flags"], echo["version"], echo["endpoint"], echo["sticky_hash"]) == (
        "-",
        "v2",
        v2.endpoint,
        None,
    )

    assert (refused["flags"], refused["route"], refused["version"]) == ("UF", "dead", "v1")
    assert refused["endpoint"] == f"127.0.0.1:{dead_port}" and refused["upstream_ms"] is None

    assert unrouted["flags"] == "NR"
    assert [
        unrouted[f] for f in ("route", "version", "endpoint", "labels", "sticky_hash", "upstream_ms")
    ] == [None] * 6

    assert (hung["flags"], hung["route"], hung["version"], hung["endpoint"]) == (
        "UT",
        "api",
        "v2",
        v2.endpoint,
    )
    assert hung["duration_ms"] >= 300 * 0.9


def test_sigusr1_reopens_the_access_log_after_a_rename(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    log_path = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    proxy = graylane(
        observed_config(v1, v2, free_port(), access_log={"path": str(log_path), "flush_interval": "50ms"})
    )
    first = send(proxy, "/before")
    wait_for_lines(log_path, 1)
    log_path.rename(rotated)

    proxy.send_signal(signal.SIGUSR1)
    poll("the access log reopened under its name", log_path.exists)
    second = send(proxy, "/after")

    after = wait_for_lines(log_path, 1)
    assert [(line["path"], line["request_id"]) for line in after] == [("/after", second.get("X-Request-ID"))]
    before = read_lines(rotated)
    assert [(line["path"], line["request_id"]) for line in before] == [("/before", first.get("X-Request-ID"))]


def test_a_disabled_access_log_writes_nothing(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    log_path = tmp_path / "access.log"
    proxy = graylane(
        observed_config(v1, v2, free_port(), access_log={"enabled": False, "path": str(log_path)})
    )
    for path in ("/a", "/status/500"):
        send(proxy, path)
    send(proxy, "/", "nowhere.test")
    assert proxy.stop() == 0  # stopping flushes whatever a log would have pending
    assert not log_path.exists()
    assert proxy.logs("stdout") == []


def test_the_access_log_goes_to_stdout_without_a_path(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(observed_config(v1, v2, free_port(), access_log={"flush_interval": "50ms"}))
    resp = send(proxy, "/to-stdout")
    match = proxy.wait_for_log(r'"path":"/to-stdout"', stream="stdout", timeout=POLL_DEADLINE)
    line = json.loads(match.string)
    assert line["request_id"] == resp.get("X-Request-ID") and list(line) == ACCESS_LOG_FIELDS


def test_durations_have_sub_millisecond_resolution(backend, graylane, tmp_path):
    v1, v2 = backend("v1"), backend("v2")
    log_path = tmp_path / "access.log"
    proxy = graylane(
        observed_config(v1, v2, free_port(), access_log={"path": str(log_path), "flush_interval": "50ms"})
    )
    for _ in range(20):
        send(proxy, "/")
    durations = [line["duration_ms"] for line in wait_for_lines(log_path, 20)]
    # Measured with a sub-millisecond clock, 20 requests of a few hundred microseconds cannot all
    # take a whole number of milliseconds (to the microsecond).
    assert not all(_whole_ms(d) for d in durations), durations


def _whole_ms(milliseconds: float) -> bool:
    return abs(milliseconds - round(milliseconds)) < 0.002


# --- traceparent -------------------------------------------------------------------------------


def _trace_headers(origin: Backend, count: int = 1) -> list[tuple[list[str], list[str]]]:
    seen = origin.wait_for_requests(count)
    return [(r.header_values("traceparent"), r.header_values("tracestate")) for r in seen]


def _traced(backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess], **top: Any):
    v1 = backend("v1")
    v2 = backend("v2")
    proxy = graylane(observed_config(v1, v2, free_port(), **top))
    return v2, proxy


def _parts(values: Iterable[str]) -> tuple[str, str, str]:
    values = list(values)
    assert len(values) == 1, values
    match = TRACEPARENT.fullmatch(values[0])
    assert match is not None, values
    return match.group(1), match.group(2), match.group(3)


@pytest.mark.parametrize("flags", ["01", "00"])
def test_a_valid_traceparent_is_continued_with_a_new_span(backend, graylane, flags):
    origin, proxy = _traced(backend, graylane)
    incoming = f"00-{TRACE_ID}-{PARENT_ID}-{flags}"
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    send(proxy, "/", headers={"X-Canary": "always", "traceparent": incoming, "tracestate": state})
    [(parents, states)] = _trace_headers(origin)
    trace_id, span_id, sent_flags = _parts(parents)
    assert (trace_id, sent_flags) == (TRACE_ID, flags)
    assert span_id not in (PARENT_ID, "0" * 16)
    assert states == [state]


def test_a_missing_traceparent_starts_a_trace_and_each_request_gets_its_own(backend, graylane):
    origin, proxy = _traced(backend, graylane)
    for _ in range(2):
        send(proxy, "/", headers={"X-Canary": "always"})
    (first, _), (second, _) = _trace_headers(origin, 2)
    a, b = _parts(first), _parts(second)
    assert a[2] == b[2] == "01"
    assert a[0] != b[0] and a[1] != b[1]
    assert "0" * 32 not in (a[0], b[0])


@pytest.mark.parametrize(
    "invalid",
    [
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper case
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has nothing after the flags
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        "garbage",
    ],
)
def test_an_invalid_traceparent_restarts_the_trace(backend, graylane, invalid):
    origin, proxy = _traced(backend, graylane)
    send(proxy, "/", headers={"X-Canary": "always", "traceparent": invalid, "tracestate": "a=b"})
    [(parents, states)] = _trace_headers(origin)
    trace_id, span_id, flags = _parts(parents)  # exactly one, valid: the client's is gone
    assert trace_id not in (TRACE_ID, TRACE_ID.upper(), "0" * 32)
    assert flags == "01"


def test_a_restarted_trace_does_not_carry_the_clients_tracestate(backend, graylane):
    origin, proxy = _traced(backend, graylane)
    send(proxy, "/", headers={"X-Canary": "always", "traceparent": "garbage", "tracestate": "a=b"})
    send(proxy, "/", headers={"X-Canary": "always", "tracestate": "c=d"})
    seen = _trace_headers(origin, 2)
    assert [states for _, states in seen] == [[], []]


def test_tracing_disabled_forwards_the_clients_traceparent_untouched(backend, graylane):
    origin, proxy = _traced(backend, graylane, tracing={"enabled": False})
    incoming = f"00-{TRACE_ID}-{PARENT_ID}-01"
    send(proxy, "/", headers={"X-Canary": "always", "traceparent": incoming, "tracestate": "k=v"})
    send(proxy, "/", headers={"X-Canary": "always", "traceparent": "not-valid"})
    send(proxy, "/", headers={"X-Canary": "always"})
    assert _trace_headers(origin, 3) == [([incoming], ["k=v"]), (["not-valid"], []), ([], [])]
