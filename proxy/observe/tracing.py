"""W3C Trace Context propagation, and optional span export over OTLP/HTTP.

Theory of operation
-------------------
Every proxied request is one hop of a trace (https://www.w3.org/TR/trace-context/).
``next_traceparent`` reads the client's ``traceparent`` value and returns the value to
send upstream: the same trace id and flags with a new span id (the proxy's own span,
whose parent is the client's span), or a fresh sampled trace when the client sent no
valid value. It runs once per request, so it is a few bytes operations and a pop of ids
drawn ahead in batches: one ``random.getrandbits`` call per batch, hex-encoded with
``binascii.hexlify`` and split at C speed (never a uuid). ``random`` is re-seeded in every
forked worker and a fork drops the ids drawn ahead, so workers never share a sequence. Ids
are not secrets: the Mersenne Twister is enough.

``tracestate`` needs no code: it is not among the headers the data plane rewrites, so
it reaches the upstream unchanged in the copied header block. graylane adds no entry of
its own to it.

Export is optional. With ``tracing.otlp_endpoint`` set, ``SpanExporter`` records one
finished SERVER span per request through the OpenTelemetry SDK (the ``graylane[otel]``
extra), with graylane's own ids, so the span the collector sees is the parent of the
upstream's span. The request path only appends a tuple; a timer on the loop turns the
pending tuples into SDK spans, and the SDK's batch processor sends them from its own
thread. Without an endpoint nothing from ``opentelemetry`` is imported.
"""

from __future__ import annotations

import logging
import os
import random
from binascii import hexlify
from typing import Any

from proxy.config import schema
from proxy.errors import StartupError

log = logging.getLogger("graylane")

LOWER_HEX = b"0123456789abcdef"
ZERO_TRACE = b"0" * 32
ZERO_SPAN = b"0" * 16

_getrandbits = random.getrandbits
_dash_join = b"-".join  # one join builds a traceparent value: fewer copies than "+"


def parse_traceparent(value: bytes | None) -> tuple[bytes, bytes, bytes] | None:
    """``(trace_id, parent_id, flags)`` of a valid ``traceparent`` value, else None.

    Version 00 must be exactly ``00-<32 hex>-<16 hex>-<2 hex>``, lower-case, with non-zero
    ids. A later version is read the way the specification asks (its first 55 characters,
    followed by the end or a dash), keeping only the sampled flag, whose meaning is fixed;
    version ff is invalid.
    """
    if value is None or len(value) < 55:
        return None
    if value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    version = value[:2]
    trace_id = value[3:35]
    parent_id = value[36:52]
    flags = value[53:55]
    # translate(None, LOWER_HEX) deletes the lower-case hex digits: anything left is invalid.
    if (version + trace_id + parent_id + flags).translate(None, LOWER_HEX):
        return None
    if trace_id == ZERO_TRACE or parent_id == ZERO_SPAN:
        return None
    if version == b"00":
        if len(value) != 55:
            return None
    elif version == b"ff" or (len(value) > 55 and value[55:56] != b"-"):
        return None
    else:
        flags = b"01" if int(flags, 16) & 1 else b"00"
    return trace_id, parent_id, flags


def next_traceparent(incoming: bytes | None) -> tuple[bytes, bytes, bytes]:
    """``(trace_id, span_id, traceparent value to send upstream)`` for one request.

    A valid ``incoming`` value is continued (same trace id and flags, a new span id);
    anything else starts a new trace with the sampled flag set. Never raises.
    """
    try:
        span_id = _pop_span()
    except IndexError:
        span_id = _draw_span_ids()
    if incoming is not None:
        # The common case inline: version 00 is 55 bytes, lower-case hex and three dashes.
        if (
            len(incoming) == 55
            and incoming[:3] == b"00-"
            and incoming.translate(None, LOWER_HEX) == b"---"
            and incoming[35] == 45  # "-"
            and incoming[52] == 45
        ):
            trace_id = incoming[3:35]
            if trace_id != ZERO_TRACE and incoming[36:52] != ZERO_SPAN:
                return trace_id, span_id, _dash_join((b"00", trace_id, span_id, incoming[53:]))
        elif incoming[:2] != b"00":
            parsed = parse_traceparent(incoming)  # a later version
            if parsed is not None:
                trace_id = parsed[0]
                return trace_id, span_id, _dash_join((b"00", trace_id, span_id, parsed[2]))
    try:
        trace_id = _pop_trace()
    except IndexError:
        trace_id = _draw_trace_ids()
    return trace_id, span_id, _dash_join((b"00", trace_id, span_id, b"01"))


# Ids are drawn DRAW at a time: one getrandbits call, one hexlify with a space between ids and
# one split give the hex ids at C speed, and a request pops one instead of drawing and encoding
# its own. An all-zero id is invalid: it is left out (a chance of 2**-64 per id).
DRAW = 64
_span_ids: list[bytes] = []  # 16 lower-case hex digits each
_trace_ids: list[bytes] = []  # 32 lower-case hex digits each
_pop_span = _span_ids.pop
_pop_trace = _trace_ids.pop


def _draw(into: list[bytes], size: int, zero: bytes) -> bytes:
    """Add DRAW new ids of ``size`` bytes to ``into`` and take one of them."""
    while not into:
        ids = hexlify(_getrandbits(8 * size * DRAW).to_bytes(size * DRAW), b" ", size).split()
        if zero in ids:
            ids = [id_ for id_ in ids if id_ != zero]
        into.extend(ids)
    return into.pop()


def _draw_span_ids() -> bytes:
    return _draw(_span_ids, 8, ZERO_SPAN)


def _draw_trace_ids() -> bytes:
    return _draw(_trace_ids, 16, ZERO_TRACE)


def _forget_drawn_ids() -> None:
    # A forked child draws its own ids from its re-seeded generator: ids drawn in the parent
    # before the fork would otherwise be used in both processes.
    _span_ids.clear()
    _trace_ids.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_drawn_ids)


# --- OpenTelemetry export -------------------------------------------------------------

INSTALL_HINT = "tracing.otlp_endpoint is set but OpenTelemetry is not installed: install graylane[otel]"
TRACES_PATH = "/v1/traces"
# Methods the HTTP semantic conventions know; any other is reported as "_OTHER".
KNOWN_METHODS = frozenset(["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"])
MAX_PENDING_SPANS = 65536  # beyond this (the export cannot keep up) spans are dropped and counted


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: ``http://collector:4318`` -> ``http://collector:4318/v1/traces``."""
    scheme_end = endpoint.find("://")
    path_start = endpoint.find("/", scheme_end + 3 if scheme_end >= 0 else 0)
    if path_start == -1 or endpoint[path_start:] == "/":
        return endpoint.rstrip("/") + TRACES_PATH
    return endpoint


def split_host(host: bytes) -> tuple[str, int | None]:
    """``b"example.com:8080"`` -> ``("example.com", 8080)``; ``b"[::1]"`` -> ``("::1", None)``."""
    text = host.decode("ascii", "backslashreplace")
    if text.startswith("["):
        end = text.find("]")
        if end != -1:
            rest = text[end + 1 :]
            port = rest[1:] if rest.startswith(":") else ""
            return text[1:end], int(port) if port.isdigit() else None
    head, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in head:
        return head, int(port)
    return text, None


class SpanExporter:
    """Records a finished SERVER span per request with the OpenTelemetry SDK.

    ``export`` is the per-request call (an append). Pending records become SDK spans
    every ``flush_interval`` seconds (or on ``flush()``/``close()``). ``exporter`` replaces
    the OTLP exporter (tests hand in the SDK's in-memory exporter, processed synchronously).
    """

    def __init__(
        self,
        config: schema.Tracing,
        loop: Any = None,
        *,
        exporter: Any = None,
        flush_interval: float = 0.5,
    ) -> None:
        if exporter is None and not config.otlp_endpoint:
            raise ValueError("SpanExporter needs tracing.otlp_endpoint (or an exporter)")
        try:
            from opentelemetry import trace as trace_api
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.id_generator import IdGenerator
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
            from opentelemetry.trace.status import Status, StatusCode

            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise StartupError(f"{INSTALL_HINT} ({error})") from error

        class GivenIds(IdGenerator):
            """Hands the SDK the ids graylane already chose (and sent upstream) for the span."""

            trace_id = 0
            span_id = 0

            def generate_trace_id(self) -> int:
                return self.trace_id

            def generate_span_id(self) -> int:
                return self.span_id

        if exporter is None:
            processor: Any = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(config.otlp_endpoint)))
        else:
            processor = SimpleSpanProcessor(exporter)
        self._ids = GivenIds()
        # ParentBased(ALWAYS_ON), whatever OTEL_TRACES_SAMPLER says: the decision must agree with
        # the sampled flag already sent upstream.
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(ALWAYS_ON),
            id_generator=self._ids,
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("graylane")
        self._trace_api = trace_api
        self._server_kind = trace_api.SpanKind.SERVER
        self._error_status = Status(StatusCode.ERROR)
        self._pending: list[tuple[Any, ...]] = []
        self.dropped = 0  # spans not recorded because too many were pending
        self._loop = loop
        self._interval = flush_interval
        self._timer: Any = None
        self._closed = False
        if loop is not None:
            self._timer = loop.call_later(flush_interval, self._tick)

    def export(self, entry: tuple, sent: bytes, incoming: bytes | None, host: bytes | None) -> None:
        """Record one finished request (hot path: an append).

        ``entry`` is the access-log tuple, ``sent`` the traceparent value sent upstream
        (from ``next_traceparent``), ``incoming`` the client's traceparent value or None,
        ``host`` the request's Host value or None.
        """
        pending = self._pending
        if len(pending) < MAX_PENDING_SPANS:
            pending.append((entry, sent, incoming, host))
        else:
            self.dropped += 1

    def _tick(self) -> None:
        try:
            self.flush()
        except Exception:  # an exporter bug must not end the timer chain
            log.exception("span export failed")
        finally:
            if not self._closed:
                self._timer = self._loop.call_later(self._interval, self._tick)

    def flush(self) -> None:
        """Turn every pending record into an SDK span (handed to the span processor)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        record = self._record
        for item in pending:
            record(*item)

    def _record(self, entry: tuple, sent: bytes, incoming: bytes | None, host: bytes | None) -> None:
        # sent is "00-<trace>-<span>-<flags>" as built by next_traceparent.
        flags = int(sent[53:55], 16)
        if not flags & 1:
            return  # not sampled: upstream was told not to record either
        trace_id = int(sent[3:35], 16)
        span_id = int(sent[36:52], 16)
        parsed = parse_traceparent(incoming) if incoming is not None else None
        trace_api = self._trace_api
        context = None
        if parsed is not None and int(parsed[0], 16) == trace_id:
            parent = trace_api.SpanContext(
                trace_id,
                int(parsed[1], 16),
                is_remote=True,
                trace_flags=trace_api.TraceFlags(int(parsed[2], 16)),
            )
            context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(parent))
        start, _, client, method, path, status, _, _, duration, _, route, version, _, _, _, flag = entry
        method_text = method.decode("ascii", "backslashreplace") if method else "_OTHER"
        attributes: dict[str, Any] = {
            "http.request.method": method_text if method_text in KNOWN_METHODS else "_OTHER",
            "url.path": path.decode("ascii", "backslashreplace") if path else "",
            "http.response.status_code": status,
            "network.peer.address": client,
        }
        if method_text not in KNOWN_METHODS:
            attributes["http.request.method_original"] = method_text
        if host:
            address, port = split_host(host)
            attributes["server.address"] = address
            if port is not None:
                attributes["server.port"] = port
        if route:
            attributes["graylane.route"] = route
        if version:
            attributes["graylane.version"] = version
        if flag and flag != "-":
            attributes["graylane.flags"] = flag
        if status >= 500:
            attributes["error.type"] = str(status)
        ids = self._ids
        ids.trace_id = trace_id
        ids.span_id = span_id
        start_ns = int(start * 1e9)
        span = self._tracer.start_span(
            attributes["http.request.method"],
            context=context,
            kind=self._server_kind,
            attributes=attributes,
            start_time=start_ns,
        )
        if status >= 500:
            span.set_status(self._error_status)
        span.end(end_time=start_ns + int(duration * 1e9))

    def force_flush(self) -> None:
        """Record what is pending and wait until the processor has handed it to the exporter."""
        self.flush()
        self._provider.force_flush()

    def close(self) -> None:
        """Record what is pending, send it, stop the timer and the SDK's thread."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        self._provider.shutdown()


def make_exporter(config: schema.Tracing, loop: Any = None) -> SpanExporter | None:
    """A ``SpanExporter`` when tracing is on and an OTLP endpoint is configured, else None.

    Raises StartupError (with "install graylane[otel]") when the endpoint is set but the
    OpenTelemetry packages are missing.
    """
    if not config.enabled or not config.otlp_endpoint:
        return None
    return SpanExporter(config, loop)
