"""W3C traceparent propagation and the optional OpenTelemetry span export."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import timeit
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.config import schema
from proxy.errors import StartupError
from proxy.observe import tracing
from proxy.observe.tracing import make_exporter, next_traceparent, parse_traceparent, split_host, traces_url

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + PARENT + b"-01"
HEADER = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")


def check_result(result: tuple[bytes, bytes, bytes]) -> tuple[bytes, bytes, bytes]:
    """Assert the shape of a ``next_traceparent`` result; return the header's (trace, span, flags)."""
    trace_id, span_id, header = result
    assert type(trace_id) is bytes and type(span_id) is bytes and type(header) is bytes
    m = HEADER.match(header)
    assert m is not None, header
    assert m.group(1) == trace_id and m.group(2) == span_id
    assert trace_id != b"0" * 32 and span_id != b"0" * 16
    return m.group(1), m.group(2), m.group(3)


def assert_new_trace(incoming: bytes | None) -> None:
    trace_id, span_id, flags = check_result(next_traceparent(incoming))
    assert flags == b"01"  # a trace graylane starts is sampled
    if incoming is not None:
        assert trace_id not in incoming and span_id not in incoming


# --- continuation -----------------------------------------------------------------------------


def test_valid_traceparent_is_continued_with_a_new_span():
    trace_id, span_id, header = next_traceparent(VALID)
    assert trace_id == TRACE
    assert span_id != PARENT
    assert header == b"00-" + TRACE + b"-" + span_id + b"-01"
    check_result((trace_id, span_id, header))


@pytest.mark.parametrize("flags", [b"00", b"01", b"02", b"03", b"ff"])
def test_flags_pass_through_unchanged(flags):
    _, _, got = check_result(next_traceparent(b"00-" + TRACE + b"-" + PARENT + b"-" + flags))
    assert got == flags


def test_every_hop_gets_its_own_span_id():
    spans = {next_traceparent(VALID)[1] for _ in range(1000)}
    assert len(spans) == 1000
    traces = {next_traceparent(None)[0] for _ in range(1000)}
    assert len(traces) == 1000


def test_absent_traceparent_starts_a_sampled_trace():
    assert_new_trace(None)
    assert_new_trace(b"")


INVALID = {
    "upper-case trace id": b"00-" + TRACE.upper() + b"-" + PARENT + b"-01",
    "upper-case parent id": b"00-" + TRACE + b"-00F067AA0BA902B7-01",
    "upper-case flags": b"00-" + TRACE + b"-" + PARENT + b"-0A",
    "upper-case version": b"0A-" + TRACE + b"-" + PARENT + b"-01",
    "all-zero trace id": b"00-" + b"0" * 32 + b"-" + PARENT + b"-01",
    "all-zero parent id": b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",
    "non-hex in trace id": b"00-" + TRACE[:-1] + b"g-" + PARENT + b"-01",
    "non-hex in flags": b"00-" + TRACE + b"-" + PARENT + b"-0x",
    "short trace id": b"00-" + TRACE[:-1] + b"-" + PARENT + b"-01",
    "long trace id": b"00-" + TRACE + b"a-" + PARENT + b"-01",
    "short parent id": b"00-" + TRACE + b"-" + PARENT[:-1] + b"-01",
    "short flags": b"00-" + TRACE + b"-" + PARENT + b"-1",
    "version 00 with more after it": VALID + b"-extra",
    "version 00 with one byte more": VALID + b"0",
    "version ff": b"ff-" + TRACE + b"-" + PARENT + b"-01",
    "one-digit version": b"0-" + TRACE + b"-" + PARENT + b"-01",
    "underscores": b"00_" + TRACE + b"_" + PARENT + b"_01",
    "dash in trace id": b"00-" + TRACE[:10] + b"-" + TRACE[11:] + b"-" + PARENT + b"-01",
    "second dash one early": b"00-" + TRACE[:31] + b"-a" + PARENT + b"-01",
    "third dash one early": b"00-" + TRACE + b"-" + PARENT[:15] + b"-b01",
    "surrounding spaces": b" " + VALID + b" ",
    "two values": VALID + b"," + VALID,
    "garbage": b"not a traceparent",
    "non-ASCII": "00-é".encode() + TRACE + b"-" + PARENT + b"-01",
    "later version, too short": b"01-" + TRACE + b"-" + PARENT + b"-0",
    "later version, no dash after flags": b"01-" + TRACE + b"-" + PARENT + b"-01x",
}


@pytest.mark.parametrize("value", list(INVALID.values()), ids=list(INVALID))
def test_invalid_traceparent_starts_a_new_trace(value):
    assert parse_traceparent(value) is None
    assert_new_trace(value)


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (b"01-" + TRACE + b"-" + PARENT + b"-01", b"01"),
        (b"cc-" + TRACE + b"-" + PARENT + b"-03-what-comes-later", b"01"),  # only the sampled bit is known
        (b"01-" + TRACE + b"-" + PARENT + b"-02", b"00"),
    ],
)
def test_later_version_is_read_as_the_specification_says(value, flags):
    trace_id, span_id, header = next_traceparent(value)
    assert trace_id == TRACE
    assert header == b"00-" + TRACE + b"-" + span_id + b"-" + flags


def lower_hex(size: int) -> st.SearchStrategy[bytes]:
    return st.text("0123456789abcdef", min_size=size, max_size=size).map(str.encode)


@given(st.binary(max_size=80))
@example(VALID[:-1])
@example(VALID.replace(b"-", b"\x00"))
def test_random_bytes_never_raise_and_give_a_valid_header(value):
    trace_id, _, flags = check_result(next_traceparent(value))
    if parse_traceparent(value) is None:
        assert flags == b"01"
    else:
        assert trace_id == value[3:35]


@given(
    lower_hex(32) | st.just(b"0" * 32),
    lower_hex(16) | st.just(b"0" * 16),
    st.integers(0, 255),
)
def test_every_valid_version_00_value_is_continued(trace_id, parent_id, flags):
    value = b"00-%s-%s-%02x" % (trace_id, parent_id, flags)
    got_trace, span_id, header = next_traceparent(value)
    if trace_id == b"0" * 32 or parent_id == b"0" * 16:
        assert_new_trace(value)
        return
    assert got_trace == trace_id
    assert header == b"00-%s-%s-%02x" % (trace_id, span_id, flags)
    check_result((got_trace, span_id, header))


@given(st.integers(0, 54), st.binary(min_size=1, max_size=1))
def test_any_one_byte_change_is_either_still_valid_or_restarts(position, byte):
    value = VALID[:position] + byte + VALID[position + 1 :]
    trace_id, _, flags = check_result(next_traceparent(value))
    if value == VALID or parse_traceparent(value) is not None:
        assert trace_id == value[3:35]
    else:
        assert flags == b"01" and trace_id != TRACE


def test_ids_drawn_ahead_leave_out_all_zero_ids(monkeypatch):
    """Ids come in batches of DRAW from one draw; an all-zero id in a batch is never handed out."""
    draws = iter([0, (1 << (64 * tracing.DRAW)) - 1, 0, (1 << (128 * tracing.DRAW)) - 1])
    monkeypatch.setattr(tracing, "_getrandbits", lambda bits: next(draws))
    monkeypatch.setattr(tracing, "_span_ids", [])
    monkeypatch.setattr(tracing, "_trace_ids", [])
    monkeypatch.setattr(tracing, "_pop_span", tracing._span_ids.pop)
    monkeypatch.setattr(tracing, "_pop_trace", tracing._trace_ids.pop)
    results = [check_result(next_traceparent(None)) for _ in range(tracing.DRAW)]
    assert {result[:2] for result in results} == {(b"f" * 32, b"f" * 16)}
    assert tracing._span_ids == [] and tracing._trace_ids == []


def test_a_forked_child_does_not_reuse_ids_drawn_in_the_parent():
    code = """
        import os
        from proxy.observe.tracing import next_traceparent, _span_ids
        next_traceparent(None)
        assert _span_ids, "ids are drawn ahead"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, b"%d" % len(_span_ids))
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(read, 100).decode(), len(_span_ids) > 0)
    """
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "True"]


def test_cost_is_reported(capsys):
    """The per-request cost, measured and printed (not asserted: machines differ)."""
    number = 100_000
    lines = []
    for label, value in (("absent", None), ("valid", VALID), ("invalid", b"garbage")):
        best = min(timeit.repeat(lambda value=value: next_traceparent(value), number=number, repeat=5))
        lines.append(f"next_traceparent() cost: {best / number * 1e9:5.0f} ns  {label}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


# --- helpers of the export ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example.com/custom/path", "https://otel.example.com/custom/path"),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
    ],
)
def test_traces_url(endpoint, url):
    assert traces_url(endpoint) == url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"shop.example.com", ("shop.example.com", None)),
        (b"shop.example.com:8443", ("shop.example.com", 8443)),
        (b"[::1]:8080", ("::1", 8080)),
        (b"[::1]", ("::1", None)),
        (b"10.0.0.1:x", ("10.0.0.1:x", None)),
    ],
)
def test_split_host(host, expected):
    assert split_host(host) == expected


def test_no_exporter_without_an_endpoint():
    assert make_exporter(schema.Tracing()) is None
    assert make_exporter(schema.Tracing(enabled=False, otlp_endpoint="http://127.0.0.1:4318")) is None
    with pytest.raises(ValueError):
        tracing.SpanExporter(schema.Tracing())


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_opentelemetry_is_not_imported_without_an_endpoint():
    result = run_python(
        """
        import sys
        from proxy.config import schema
        from proxy.observe import accesslog, tracing
        assert tracing.make_exporter(schema.Tracing()) is None
        tracing.next_traceparent(None)
        loaded = sorted(n for n, m in sys.modules.items() if n.startswith("opentelemetry") and m)
        print(loaded)
        sys.exit(1 if loaded else 0)
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_opentelemetry_is_a_clear_startup_error():
    # Importing a module whose sys.modules entry is None fails as if it were not installed.
    result = run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None
        from proxy.config import schema
        from proxy.errors import StartupError
        from proxy.observe import tracing
        try:
            tracing.make_exporter(schema.Tracing(otlp_endpoint="http://127.0.0.1:4318"))
        except StartupError as error:
            print(error)
            sys.exit(0)
        sys.exit(1)
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "install graylane[otel]" in result.stdout
    assert issubclass(StartupError, Exception)


# --- the export itself (needs the graylane[otel] extra) ---------------------------------------


class FakeLoop:
    def __init__(self) -> None:
        self.timers: list[list[Any]] = []

    def call_later(self, delay: float, callback: Any) -> Any:
        timer = _Timer(delay, callback)
        self.timers.append(timer)
        return timer


class _Timer(list):
    def __init__(self, delay: float, callback: Any) -> None:
        super().__init__([delay, callback])
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


T0 = 1_767_225_600.25


def entry(status: int = 200, flags: str = "-", method: bytes = b"GET") -> tuple:
    return (
        T0, b"5f3a9c01000000a1", "10.1.2.3", method, b"/api/items", status, 0, 1234, 0.0025, 0.002,
        "shop", "v2", "10.0.2.1:8080", None, -1, flags,
    )  # fmt: skip


@pytest.fixture
def memory_export():
    """(SpanExporter wired to the SDK's in-memory exporter, the in-memory exporter, the fake loop)."""
    pytest.importorskip("opentelemetry.sdk.trace", reason="the graylane[otel] extra is not installed")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    loop = FakeLoop()
    exporter = tracing.SpanExporter(
        schema.Tracing(service_name="edge"), loop, exporter=memory, flush_interval=0.25
    )
    yield exporter, memory, loop
    exporter.close()


def test_export_records_a_server_span_with_graylane_ids(memory_export):
    from opentelemetry.trace import SpanKind, StatusCode

    exporter, memory, loop = memory_export
    trace_id, span_id, sent = next_traceparent(VALID)
    exporter.export(entry(), sent, VALID, b"shop.example.com:8443")
    assert memory.get_finished_spans() == ()  # recorded off the request path, on the timer
    (timer,) = loop.timers
    assert timer[0] == 0.25
    timer[1]()
    (span,) = memory.get_finished_spans()
    assert span.name == "GET"
    assert span.kind == SpanKind.SERVER
    assert span.context.trace_id == int(trace_id, 16)
    assert span.context.span_id == int(span_id, 16)
    assert span.parent is not None and span.parent.is_remote
    assert span.parent.span_id == int(PARENT, 16)
    assert span.parent.trace_id == int(TRACE, 16)
    assert span.start_time == int(T0 * 1e9)
    assert span.end_time - span.start_time == pytest.approx(2_500_000, abs=1000)
    assert span.status.status_code == StatusCode.UNSET
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "url.path": "/api/items",
        "http.response.status_code": 200,
        "server.address": "shop.example.com",
        "server.port": 8443,
        "network.peer.address": "10.1.2.3",
        "graylane.route": "shop",
        "graylane.version": "v2",
    }
    assert span.resource.attributes["service.name"] == "edge"
    assert len(loop.timers) == 2 and not loop.timers[1].cancelled  # re-armed


def test_export_of_a_new_trace_and_of_an_error(memory_export):
    from opentelemetry.trace import StatusCode

    exporter, memory, _ = memory_export
    trace_id, span_id, sent = next_traceparent(None)
    exporter.export(entry(status=502, flags="UF", method=b"PURGE"), sent, None, None)
    exporter.force_flush()
    (span,) = memory.get_finished_spans()
    assert span.parent is None
    assert (span.context.trace_id, span.context.span_id) == (int(trace_id, 16), int(span_id, 16))
    assert span.status.status_code == StatusCode.ERROR
    attributes = dict(span.attributes)
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "PURGE"
    assert attributes["error.type"] == "502"
    assert attributes["graylane.flags"] == "UF"
    assert "server.address" not in attributes


def test_unsampled_requests_are_not_exported(memory_export):
    exporter, memory, _ = memory_export
    unsampled = b"00-" + TRACE + b"-" + PARENT + b"-00"
    _, _, sent = next_traceparent(unsampled)
    exporter.export(entry(), sent, unsampled, None)
    exporter.close()
    assert memory.get_finished_spans() == ()


def test_close_records_what_is_pending_and_stops_the_timer(memory_export):
    exporter, memory, loop = memory_export
    for _ in range(3):
        _, _, sent = next_traceparent(None)
        exporter.export(entry(), sent, None, None)
    exporter.close()
    assert len(memory.get_finished_spans()) == 3
    assert loop.timers[-1].cancelled


def test_otlp_exporter_is_built_for_an_endpoint():
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="graylane[otel] is not installed")
    exporter = make_exporter(schema.Tracing(otlp_endpoint="http://127.0.0.1:9"))
    assert isinstance(exporter, tracing.SpanExporter)
    exporter.close()  # nothing pending: nothing is sent
