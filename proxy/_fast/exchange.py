"""The exchange: one ``Downstream`` per client connection, one ``Upstream`` per upstream connection.

Theory of operation
-------------------
A connection is in one of five states (the table below is the only place they
change):

    IDLE    waiting for (the rest of) a request head
    ACTIVE  one exchange in progress: the request streams up, the response down
    TUNNEL  after an upstream's 101: bytes relayed both ways, no HTTP any more
    LINGER  a refusal (400, 408, 413, 414, 431 ...) was sent and the write side shut:
            what the client still sends is read and dropped for a moment, so that
            closing with unread bytes (which resets the connection and can destroy
            the answer in the client's buffer) does not hide the answer (RFC 9112 9.6)
    CLOSED  the transport is gone

An exchange is driven by callbacks only (no coroutine per request): the head is
found with ``bytes.find``, parsed whole by ``proxy._fast.http1``, routed, and the
upstream request (head plus any body bytes already here) goes out in one write on
a pooled connection. Only a pool miss starts a coroutine (the connect).

``Upstream`` is a thin protocol that hands bytes to its owner (the Downstream it is
leased to) and knows whether it is alive. An idle (pooled) connection has no owner:
any byte or close from the server while idle means it is dead and is never leased
again.

This file is plain Python and is also compiled by Cython (``_exchange_c``, with the
C types of both classes in ``_exchange_c.pxd``: attributes become C fields and the
internal methods C functions, which takes most of the interpreter out of a request).
The protocols do not derive from ``asyncio.Protocol`` (an extension type cannot):
the event loop only calls their methods. Closures and coroutines live in ``def``
methods the .pxd leaves alone.

Pipelined requests are kept as bytes in ``buf`` and parsed after the current
response ends, so answers leave in order. Within an exchange the request body
(``req_done``) and the response (``resp_mode``) progress independently: an
upstream may answer before it has read the whole body.

Flow control: when a transport's write buffer passes its high-water mark, the
other side's reading is paused (``pause_writing`` -> ``pause_reading``), so memory
stays bounded whatever the speeds. Reading of the client may be paused for
several reasons at once; ``paused`` is a bit mask of them.

Timeouts: each connection has one ``deadline`` and a ``timer`` kind; the
server's sweep calls ``on_timer`` when it has passed (no timer per request).
During an exchange (T_RESPONSE) three limits run at once: the exchange's own
deadline (``exchange_deadline``: the whole request, or the response head), the
gap between two reads of the request body (``body_seen`` + ``body_timeout``,
408) and the gap between two reads of the response body (``resp_seen`` +
``response_idle_timeout``, the response cut short). A read only records when it
happened; ``deadline`` is the earliest of the three as last computed, and
``on_timer`` computes it again when it finds that nothing has expired yet.
Deadlines, like every time here, are ``time.perf_counter()`` readings: the
exchange reads that clock three times a request (start, sent, done) and reuses
the readings for its deadlines; ``loop.time()`` would be more calls, not fewer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from proxy._fast import http1

# Compiled, the .pxd cimports these from _http1_c, so each is a C call rather than a Python one.
from proxy._fast.http1 import drop_header_lines, find_head_end, parse_request_head, parse_response_head
from proxy.errors import (
    BadRequest,
    HeaderTooLarge,
    HttpError,
    MethodNotAllowed,
    RequestTimeout,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReset,
    UpstreamTimeout,
    UriTooLong,
)
from proxy.http.mirror import MAX_BODY as MAX_MIRROR_BODY
from proxy.http.mirror import Mirror
from proxy.http.responses import ALLOW, ALLOW_WITH_TRACE, CONTINUE, error_response, local_response, trace_echo
from proxy.observe.snapshot import BOUNDS, Key, SlotTotals, Snapshot
from proxy.observe.tracing import next_traceparent
from proxy.policy import KeysPending

if TYPE_CHECKING:
    from proxy.config.schema import ClientLimits
    from proxy.config.schema import Pool as PoolSettings
    from proxy.routing.decision import Target

log = logging.getLogger("graylane")

CRLF = b"\r\n"

# connection states (LINGER and CLOSED last: ``state >= LINGER`` means no more HTTP on it)
IDLE, ACTIVE, TUNNEL, LINGER, CLOSED = 0, 1, 2, 3, 4

# timer kinds
T_NONE, T_KEEPALIVE, T_HEAD, T_RESPONSE, T_LINGER = 0, 1, 2, 3, 4

# response framing
R_NONE, R_LENGTH, R_CHUNKED, R_CLOSE = 0, 1, 2, 3

# reasons for pausing the client's reading (bit mask)
P_UPSTREAM_FULL = 1  # the upstream's write buffer is full
P_PIPELINE = 2  # pipelined bytes are waiting for the current exchange
P_CONNECTING = 4  # body bytes are waiting for the upstream connection
P_POLICY = 8  # too many bytes arrived while a policy decision (JWKS fetch, Redis) was awaited

IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])
# Lingering close: how long a refused client's bytes are read and dropped at most, how long it
# may stay silent meanwhile, and how many bytes are dropped before closing anyway.
LINGER_TIME = 3.0
LINGER_IDLE = 1.0
LINGER_MAX_BYTES = 8 * 1024 * 1024
MAX_FORWARDS = frozenset([b"max-forwards"])
MAX_RESPONSE_HEAD = 64 * 1024
MAX_PENDING = 256 * 1024
MAX_CONNECT_RETRIES = 2  # other endpoints tried when a connect fails (nothing was sent yet)
RESPONSE_MAX_HEADERS = 256
HEX_PAIRS = tuple(b"%02x" % i for i in range(256))
BOUND_VALUES = BOUNDS  # the latency bucket bounds (proxy.observe.snapshot), a C array when compiled
LAST_BOUND = len(BOUNDS) - 1

ChunkedDecoder = http1.ChunkedDecoder


class RequestCounters:
    """Request counters per slot; see the module docstring."""

    __slots__ = ("_index", "_keys", "_codes", "_buckets", "_seconds", "_bytes_in", "_bytes_out", "_connect")

    def __init__(self) -> None:
        self._index: dict[Key, int] = {}
        self._keys: list[Key] = []
        # Parallel lists indexed by slot: record() touches each once.
        self._codes: list[dict[int, int]] = []
        self._buckets: list[list[int]] = []
        self._seconds: list[float] = []
        self._bytes_in: list[int] = []
        self._bytes_out: list[int] = []
        self._connect: dict[tuple[str, str, str], int] = {}
        self.slot("", "", "")  # NO_ROUTE

    # --- slots (config compile time) ----------------------------------------------------

    def slot(self, route: str, service: str, version: str) -> int:
        """The slot of a (route, service, version), created on first use and kept forever."""
        key = (route, service, version)
        found = self._index.get(key)
        if found is not None:
            return found
        # Grow every list before publishing the index: record() may never see a half-made slot.
        self._codes.append({})
        self._buckets.append([0] * (len(BOUNDS) + 1))
        self._seconds.append(0.0)
        self._bytes_in.append(0)
        self._bytes_out.append(0)
        self._keys.append(key)
        found = self._index[key] = len(self._keys) - 1
        return found

    def assign(self, targets: Iterable[Target]) -> None:
        """Set ``stats_slot`` of every target of a freshly compiled route table (``table.targets``)."""
        for target in targets:
            target.stats_slot = self.slot(target.route_name, target.group.service, target.version_name)

    @property
    def keys(self) -> tuple[Key, ...]:
        """(route, service, version) per slot."""
        return tuple(self._keys)

    # --- hot path ------------------------------------------------------------------------

    def record(self, slot: int, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        """Count one finished request: its status, duration, request body bytes and response bytes."""
        codes = self._codes[slot]
        codes[status] = codes.get(status, 0) + 1
        # The first bound >= seconds (bisect_left), searched from the fast end: most requests
        # stop at the first bound or two, and compiled this is a C loop over C doubles.
        bucket = 0
        while bucket < LAST_BOUND and seconds > BOUND_VALUES[bucket]:
            bucket += 1
        if seconds > BOUND_VALUES[bucket]:
            bucket += 1
        self._buckets[slot][bucket] += 1
        self._seconds[slot] += seconds
        self._bytes_in[slot] += bytes_in
        self._bytes_out[slot] += bytes_out

    def connect_error(self, service: str, version: str, endpoint: str) -> None:
        """Count a failed connect to an upstream endpoint (rare path)."""
        key = (service, version, endpoint)
        self._connect[key] = self._connect.get(key, 0) + 1

    # --- read side -----------------------------------------------------------------------

    def snapshot(self, at: float = 0.0) -> Snapshot:
        """Copy every counter (cumulative since start) into an immutable ``Snapshot``."""
        slots = tuple(
            SlotTotals(dict(codes), tuple(buckets), seconds, bytes_in, bytes_out)
            for codes, buckets, seconds, bytes_in, bytes_out in zip(
                self._codes, self._buckets, self._seconds, self._bytes_in, self._bytes_out, strict=True
            )
        )
        return Snapshot(at, tuple(self._keys), slots, dict(self._connect))


class Stats:
    """Plain integer counters the data plane increments; nothing slower than ``+= 1`` per request.

    The exposition side (Prometheus, /status) reads them at scrape time.
    """

    FIELDS = (
        "requests",  # finished requests
        "responses_by_class",  # list indexed by status // 100 (0..5)
        "errors_by_flag",  # dict flag -> count, for errors graylane answered or saw
        "upstream_connects",
        "upstream_connect_errors",
        "upstream_timeouts",
        "pool_hits",
        "pool_misses",
        "retries",
        "rejected_by_reason",  # dict reason -> count (400, 408, 414, 431 ...)
        "accept_paused",
        "connections_evicted",  # idle client connections closed to make room at the connection cap
        "connection_cap_reached",  # times the connection cap was reached (episodes)
        "reloads_ok",
        "reloads_failed",
    )
    __slots__ = FIELDS

    def __init__(self) -> None:
        self.requests = 0
        self.responses_by_class = [0] * 6
        self.errors_by_flag: dict[str, int] = {}
        self.upstream_connects = 0
        self.upstream_connect_errors = 0
        self.upstream_timeouts = 0
        self.pool_hits = 0
        self.pool_misses = 0
        self.retries = 0
        self.rejected_by_reason: dict[str, int] = {}
        self.accept_paused = 0
        self.connections_evicted = 0
        self.connection_cap_reached = 0
        self.reloads_ok = 0
        self.reloads_failed = 0

    def count_error(self, flag: str) -> None:
        self.errors_by_flag[flag] = self.errors_by_flag.get(flag, 0) + 1

    def count_rejected(self, reason: str) -> None:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1

    def snapshot(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}


class ServerContext:
    """State shared by every connection of one server process.

    ``table`` (the compiled routing snapshot) is replaced in one assignment on reload;
    a request reads it once when its head is parsed, so it finishes on the config it
    started with.
    """

    __slots__ = (
        "limits",
        "loop",
        "stats",
        "counters",
        "pools",
        "mirror",
        "table",
        "policies",
        "access_log",
        "exporter",
        "tracing",
        "health",
        "connections",
        "accepting",
        "out",
        "immediate",
        "draining",
        "on_connection_closed",
        "max_clients",
        "via11",
        "via10",
        "drop_underscores",
        "allow_trace",  # the TRACE method, not W3C tracing (``tracing``)
        "_id_prefix",
        "_id_counter",
        "_id_block",
    )

    def __init__(self, table: Any, limits: ClientLimits, loop: Any) -> None:
        self.limits = limits
        self.loop = loop
        self.stats = Stats()
        # Per-(route, version) counters outlive reloads: slots are kept by name.
        self.counters = RequestCounters()
        self.pools = PoolRegistry(self.stats)
        self.mirror = Mirror(loop)
        self.table = None
        # proxy.policy.PolicyTable compiled from the same config as ``table`` (routes by id)
        self.policies = None
        self.set_table(table)
        self.access_log = None  # proxy.observe.accesslog.AccessLog when enabled
        self.exporter = None  # proxy.observe.tracing.SpanExporter when OTLP export is set up
        self.tracing = True  # continue or start a W3C trace on every request
        self.health = None  # proxy.health.monitor.HealthMonitor: passive outlier detection
        self.connections: set[Any] = set()  # every open Downstream
        self.accepting = 0  # accepted sockets whose protocol is not set up yet
        self.out: list[Any] = []  # transport, data, transport, data ...: writes for the end of this iteration
        self.immediate = False  # write at once instead (config ``writes``; see send)
        self.draining = False
        self.on_connection_closed = None  # set by the listener: resumes a paused accept
        # Client connections at most (limits.max_connections bounded by the descriptors there are:
        # proxy.runtime.fdcap); the Acceptor keeps to it.
        self.max_clients = limits.max_connections
        self.set_protocol(None)  # via11 / via10 (the Via lines to add), drop_underscores, allow_trace
        self._id_prefix = os.urandom(4).hex().encode()
        self._id_counter = 0
        self._id_block = b""  # prefix + the counter's hex digits but the last two

    def send(self, transport: Any, data: bytes) -> None:
        """Write ``data`` at the end of this loop iteration (PERFORMANCE rule 2), or at once.

        Every write of the data plane goes through here, in order, so they never pass each
        other. Batched (``writes: batched``), a worker with a CPU of its own spends less CPU
        per request: the peers it wakes are still awake for its later writes. Immediate
        (``writes: immediate``), each hop starts sooner: with several processes sharing the
        CPUs (workers, wrk, the origin) that is what bounds the rate. docs/performance.md
        has the figures; ``writes: auto`` picks batched for one worker, immediate for more.
        """
        if self.immediate:
            if self.out:
                self.flush()  # what was batched before a reload switched modes goes first
            if not transport.is_closing():
                transport.write(data)
            return
        out = self.out
        out.append(transport)
        out.append(data)
        if len(out) == 2:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            for i in range(0, len(out), 2):
                transport = out[i]
                if not transport.is_closing():
                    transport.write(out[i + 1])

    def set_protocol(self, protocol: Any) -> None:
        """Take the ``protocol`` section of a config (None: its defaults)."""
        if protocol is None:
            from proxy.config.schema import Protocol

            protocol = Protocol()
        via = protocol.via
        if via is True:
            via = "graylane"
        if via:
            # The received-by is this hop; the protocol is the one the message came in with.
            self.via11 = b"Via: 1.1 " + via.encode() + CRLF
            self.via10 = b"Via: 1.0 " + via.encode() + CRLF
        else:
            self.via11 = self.via10 = b""
        self.drop_underscores = protocol.headers_with_underscores == "drop"
        self.allow_trace = protocol.trace

    def evict_idle(self, count: int) -> int:
        """Close up to ``count`` client connections with no request in flight, the longest idle first.

        Lingering ones (a refusal already answered) go before idle ones. Returns how many were
        closed; they leave ``connections`` at once, so the caller may accept in their place.
        """
        idle = [conn for conn in self.connections if conn.state == IDLE or conn.state == LINGER]
        if not idle:
            return 0
        if len(idle) > count:
            idle.sort(key=_idle_order)
            del idle[count:]
        for conn in idle:
            self.connections.discard(conn)
            conn.evict()
        self.stats.connections_evicted += len(idle)
        return len(idle)

    def set_table(self, table: Any) -> None:
        """Swap in a compiled routing snapshot (its targets get their counter slots first)."""
        self.counters.assign(table.targets)
        self.table = table

    def new_request_id(self) -> bytes:
        """A request id unique to this process: a random prefix and a counter (cheap, no uuid4).

        The counter's last two hex digits come from a table; the rest is formatted once per
        256 ids (a %-format per request cost a quarter of a microsecond).
        """
        counter = self._id_counter + 1
        self._id_counter = counter
        low = counter & 0xFF
        if low == 0 or not self._id_block:
            self._id_block = b"%s%06x" % (self._id_prefix, counter >> 8)
        return self._id_block + HEX_PAIRS[low]


def _idle_order(conn: Downstream) -> float:
    """Eviction order: lingering connections first, then by when each became idle."""
    return -1.0 if conn.state == LINGER else conn.t_idle


class EndpointPool:
    __slots__ = ("host", "port", "settings", "idle", "stats", "retired", "active")

    def __init__(self, host: str, port: int, settings: PoolSettings, stats: Stats) -> None:
        self.host = host
        self.port = port
        self.settings = settings
        self.idle: list[Upstream] = []
        self.stats = stats
        self.retired = False  # the endpoint left the config: close connections as they come back
        self.active = 0  # connections leased out

    def acquire(self) -> Upstream | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.alive:
                self.active += 1
                return conn
        return None

    def release(self, conn: Upstream, now: float) -> None:
        """Take back a connection after a complete exchange that left it reusable."""
        self.active -= 1
        if self.retired or not conn.alive or len(self.idle) >= self.settings.max_idle:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def discard(self, conn: Upstream) -> None:
        """A leased connection that cannot be reused."""
        self.active -= 1
        conn.close()

    async def connect(self) -> Upstream:
        """Open a fresh connection (the pool-miss path), leased to the caller."""
        loop = asyncio.get_running_loop()
        self.stats.upstream_connects += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: Upstream(self), self.host, self.port),
                self.settings.connect_timeout,
            )
        except TimeoutError:
            self.stats.upstream_connect_errors += 1
            raise UpstreamTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            self.stats.upstream_connect_errors += 1
            reason = exc.strerror or exc
            raise UpstreamConnectError(f"connect to {self.host}:{self.port} failed: {reason}") from None
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.active += 1
        return conn

    def sweep(self, now: float) -> None:
        """Close idle connections older than the idle timeout (the oldest are at the front)."""
        idle = self.idle
        limit = now - self.settings.idle_timeout
        drop = 0
        while drop < len(idle) and (idle[drop].idle_since < limit or not idle[drop].alive):
            idle[drop].close()
            drop += 1
        if drop:
            del idle[:drop]

    def close_idle(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


class PoolRegistry:
    """All endpoint pools, keyed by (host, port); kept across reloads for endpoints still present."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.pools: dict[tuple[str, int], EndpointPool] = {}

    def get(self, host: str, port: int, settings: PoolSettings) -> EndpointPool:
        key = (host, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = EndpointPool(host, port, settings, self.stats)
        return pool

    def for_endpoint(self, endpoint: Any) -> EndpointPool:
        """The pool of a routing ``Endpoint``, remembered on it (one attribute read per request)."""
        pool = endpoint.connections
        if pool is None:
            pool = endpoint.connections = self.get(endpoint.host, endpoint.port, endpoint.pool)
        return pool

    def keep_only(self, keys: set[tuple[str, int]], settings: dict[tuple[str, int], PoolSettings]) -> None:
        """After a reload: retire pools of endpoints that left, update the settings of the others."""
        for key in list(self.pools):
            pool = self.pools[key]
            if key in keys:
                pool.settings = settings[key]
            else:
                pool.retired = True
                pool.close_idle()
                del self.pools[key]

    def sweep(self, now: float) -> None:
        for pool in self.pools.values():
            if pool.idle:
                pool.sweep(now)

    def close_idle(self) -> None:
        for pool in self.pools.values():
            pool.close_idle()

    def idle_count(self) -> int:
        return sum(len(pool.idle) for pool in self.pools.values())


class Upstream:
    """One connection to an upstream endpoint, leased to ``owner`` or idle in its pool."""

    __slots__ = ("pool", "transport", "owner", "alive", "idle_since", "read_paused")

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.owner: Any = None
        self.alive = False
        self.idle_since = 0.0
        self.read_paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.alive = True

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:
            # An idle connection must be silent; anything here means it is unusable.
            self.alive = False
            self.transport.close()
            return
        owner._upstream_data(data)

    def eof_received(self) -> bool:
        self.alive = False
        return False  # let the transport close itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        owner = self.owner
        if owner is not None:
            self.owner = None
            owner._upstream_lost(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner._upstream_write_paused(True)

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner._upstream_write_paused(False)

    def pause_reading(self) -> None:
        if not self.read_paused and self.alive:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if self.alive:
                self.transport.resume_reading()

    def close(self) -> None:
        self.alive = False
        self.owner = None
        if self.transport is not None:
            self.transport.close()


class Downstream:
    __slots__ = (
        "ctx",
        "loop",
        "transport",
        "state",
        "buf",
        "paused",
        "writing_paused",
        "deadline",
        "timer",
        "client_ip",
        "xff_tail",
        "proto_line",
        "forwarded_lines",  # X-Forwarded-For and -Proto when the client sent no X-Forwarded-For
        # the limits this connection reads on every request, copied from ctx.limits
        "head_timeout",
        "keepalive_timeout",
        "max_header_bytes",
        "max_uri_bytes",
        "max_headers",
        "body_timeout",
        "ignore_client_abort",
        "drop_underscores",
        "client_eof",
        "t_idle",  # when the connection last had no request in flight (eviction order)
        # the current exchange
        "exchange",
        "req",
        "decision",
        "request_id",
        "t_start",
        "upstream",
        "pool",
        "reused",
        "pending",
        "pending_bytes",
        "retry_head",
        "retried",
        "body_remaining",
        "decoder",
        "req_done",
        "sent_continue",
        "close_after",
        "resp_buf",
        "resp_mode",
        "resp_remaining",
        "resp_decoder",
        "resp_started",
        "resp_chunk",
        "upstream_reusable",
        "status",
        "bytes_in",  # request body bytes received
        "bytes_out",  # response bytes written (head and body)
        "t_sent",  # when the request went to the upstream
        "t_done",  # when the last exchange was counted (the keep-alive wait starts there)
        "trace_out",  # the traceparent sent upstream, or None
        "trace_continued",  # the client's trace goes on (its tracestate is forwarded)
        "upstream_attached",  # the request reached an upstream connection
        "claim_headers",  # b"X-User-ID: ...\r\n" lines of the verified JWT, for the upstream head
        "waiting",  # a policy decision is awaited: arriving bytes only go to buf
        "exchange_deadline",  # the exchange's own deadline (whole request, response head)
        "body_seen",  # when the last request body bytes came (while the body is incomplete)
        "resp_seen",  # when the last response body bytes came (while the body streams)
        "resp_idle",  # the upstream's response_idle_timeout (0: none)
        "linger_until",  # LINGER: the latest moment to close
        "lingered",  # LINGER: bytes read and dropped
    )

    def __init__(self, ctx: ServerContext, scheme: bytes) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        limits = ctx.limits
        self.head_timeout = limits.request_head_timeout
        self.keepalive_timeout = limits.keepalive_timeout
        self.max_header_bytes = limits.max_header_bytes
        self.max_uri_bytes = limits.max_uri_bytes
        self.max_headers = limits.max_headers
        self.body_timeout = limits.request_body_timeout
        self.ignore_client_abort = limits.ignore_client_abort
        self.drop_underscores = ctx.drop_underscores
        self.t_idle = 0.0
        self.linger_until = 0.0
        self.lingered = 0
        self.transport: Any = None
        self.state = IDLE
        self.buf = b""
        self.paused = 0
        self.writing_paused = False
        self.deadline = math.inf
        self.timer = T_NONE
        self.t_done = 0.0
        self.client_ip = b""
        self.xff_tail = b""
        self.proto_line = b"X-Forwarded-Proto: " + scheme + CRLF
        self.client_eof = False  # the client half-closed: answer what it sent, then close
        self.exchange = 0
        self.upstream: Upstream | None = None
        self.pool: Any = None
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.req = None
        self.decision = None
        self.request_id = b""
        self.t_start = 0.0
        self.upstream = None
        self.pool = None
        self.reused = False
        self.pending: list[bytes] | None = None
        self.pending_bytes = 0
        self.retry_head: bytes | None = None
        self.retried = False
        self.body_remaining = 0
        self.decoder = None
        self.req_done = True
        self.sent_continue = False
        self.close_after = False
        self.resp_buf = b""
        self.resp_mode = -1  # no response head yet
        self.resp_remaining = 0
        self.resp_decoder = None
        self.resp_started = False  # a byte of the response was written to the client
        self.resp_chunk = False  # re-frame the body as chunked for the client
        self.upstream_reusable = False
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.t_sent = 0.0
        self.trace_out = None
        self.trace_continued = False
        self.upstream_attached = False
        self.claim_headers = b""
        self.waiting = False
        self.exchange_deadline = math.inf
        self.body_seen = 0.0
        self.resp_seen = 0.0
        self.resp_idle = 0.0

    # --- asyncio.Protocol: the client side -----------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        ip = peer[0] if peer else "unknown"
        self.client_ip = ip
        self.xff_tail = ip.encode()
        self.forwarded_lines = b"X-Forwarded-For: " + self.xff_tail + CRLF + self.proto_line
        ctx = self.ctx
        ctx.connections.add(self)
        self._arm(T_HEAD, self.head_timeout)
        self.t_idle = self.deadline - self.head_timeout

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            self.buf = self.buf + data if self.buf else data
            if len(self.buf) > MAX_PENDING:
                self._pause(P_POLICY)
            return
        state = self.state
        if state == TUNNEL:
            self.ctx.send(self.upstream.transport, data)
            return
        if state == ACTIVE and not self.req_done:
            data = self._request_body(data)
            if not data or self.state != ACTIVE:
                return
        if state >= LINGER:
            if state == LINGER:
                self._linger_read(len(data))
            return
        self.buf = self.buf + data if self.buf else data
        if self.state == IDLE:
            self._next_request()
        elif len(self.buf) > self.max_header_bytes:
            self._pause(P_PIPELINE)

    def eof_received(self) -> bool:
        # A FIN while an answer is awaited ends the exchange (connection_lost counts a 499 and
        # closes the upstream connection), as nginx and Envoy do: a client that closed its socket
        # and one that only half-closed it look alike, and work for a gone client must not pile
        # up. With limits.ignore_client_abort a half-closed client still gets its answers.
        if self.state == ACTIVE and self.req_done and self.ignore_client_abort:
            self.client_eof = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        self.state = CLOSED
        ctx = self.ctx
        ctx.connections.discard(self)
        if state in (ACTIVE, TUNNEL):
            if state == ACTIVE:
                ctx.stats.count_error("DC")
                # nginx's 499: the client left before its answer was complete.
                self._account(self.status if self.resp_started else 499, "DC")
            self._drop_upstream()
        if ctx.on_connection_closed is not None:
            ctx.on_connection_closed()

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.upstream is not None:
            self.upstream.resume_reading()

    # --- reading the request ---------------------------------------------------

    def _next_request(self) -> None:
        buf = self.buf
        # RFC 9112 2.2: ignore empty lines before a request line.
        while len(buf) >= 2 and buf[0] == 13 and buf[1] == 10:  # a CRLF, read without slicing
            buf = buf[2:]
        end = find_head_end(buf)
        if end == -1:
            self.buf = buf
            if buf:
                if self.timer == T_KEEPALIVE:
                    self._arm(T_HEAD, self.head_timeout)
                if len(buf) > self.max_header_bytes:
                    self._reject(self._oversized(buf))
                elif len(buf) > self.max_uri_bytes + 16 and buf.find(CRLF, 0, self.max_uri_bytes + 64) == -1:
                    self._reject(UriTooLong("request-target too long"))
            return
        size = end + 4
        if size > self.max_header_bytes:
            self._reject(self._oversized(buf))
            return
        self.buf = buf[size:]
        try:
            req = parse_request_head(buf[:size], self.max_uri_bytes, self.max_headers, self.drop_underscores)
        except HttpError as error:
            self._reject(error)
            return
        path = req.path
        if _may_have_dot_segment(path) and has_dot_segment(path):
            self._reject(BadRequest("dot segment in the request path"))
            return
        self._begin(req)

    def _oversized(self, buf: bytes) -> HttpError:
        """A head over max_header_bytes: 414 when its request line already holds too long a
        target (that is what is wrong with it), 431 otherwise."""
        limit = self.max_uri_bytes + 64  # the longest request line a target within max_uri_bytes makes
        line_end = buf.find(CRLF, 0, limit)
        if line_end == -1:
            if len(buf) >= limit:
                return UriTooLong("request-target too long")
        else:
            line = buf[:line_end]
            first = line.find(b" ")
            last = line.rfind(b" ")
            if first != -1 and last - first - 1 > self.max_uri_bytes:
                return UriTooLong("request-target too long")
        return HeaderTooLarge("request head too large")

    def _begin(self, req: Any) -> None:
        ctx = self.ctx
        self.state = ACTIVE
        self.exchange += 1
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        self.t_start = perf_counter()
        self.req = req
        rid = req.request_id or ctx.new_request_id()
        self.request_id = rid
        incoming = req.traceparent
        if ctx.tracing:
            trace_out = next_traceparent(incoming)[2]
            # A tracestate travels only with the trace it belongs to (W3C Trace Context 4.3).
            self.trace_continued = incoming is not None and trace_out[3:35] == incoming[3:35]
        else:
            trace_out = incoming
            self.trace_continued = True
        self.trace_out = trace_out
        self.close_after = not req.keep_alive or ctx.draining
        if req.chunked:
            self.decoder = ChunkedDecoder()
            self.req_done = False
            self.body_seen = self.t_start
        elif req.content_length > 0:
            self.body_remaining = req.content_length
            self.req_done = False
            self.body_seen = self.t_start
        method = req.method
        if (method == b"OPTIONS" or method == b"TRACE") and self._max_forwards(req):
            return
        self._route(req, True)

    def _max_forwards(self, req: Any) -> bool:
        """RFC 9110 7.6.2 for OPTIONS and TRACE: Max-Forwards 0 is answered here, a larger one
        goes on one less. True when the request was answered."""
        value = req.header(b"max-forwards")
        if value is None:
            return False
        if not value.isdigit() or len(value) > 18:
            self._answer_error(BadRequest("malformed Max-Forwards"))
            return True
        hops = int(value)
        if hops > 0:
            # req is this exchange's own: the upstream head is made from this block.
            req.forward_headers = drop_header_lines(req.forward_headers, MAX_FORWARDS) + (
                b"Max-Forwards: %d\r\n" % (hops - 1)
            )
            return False
        trace = self.ctx.allow_trace
        allow = ALLOW_WITH_TRACE if trace else ALLOW
        if req.method == b"OPTIONS":
            self._answer_local(200, allow, b"", b"")
        elif trace:
            self._answer_local(200, b"", b"message/http", trace_echo(req))
        else:
            self._answer_error(MethodNotAllowed("TRACE is not enabled (protocol.trace)", allow))
        return True

    def _route(self, req: Any, may_wait: bool) -> None:
        """Route the request through its route's policies: auth, local limits, version, Redis limits."""
        ctx = self.ctx
        table = ctx.table
        policies = ctx.policies
        policy = identity = None
        try:
            if policies is None or policies.empty:
                decision = table.decide(req, self.client_ip)
            else:
                route, view = table.match(req, self.client_ip)
                policy = policies.routes[route.id]
                if policy is not None:
                    identity = policy.admit(req, self.client_ip, self.t_start, may_wait)
                claims = identity.route_claims if identity is not None else None
                decision = table.choose(route, view, req, self.client_ip, claims)
        except KeysPending as pending:
            # The JWKS fetch this token may need is under way: route again once it is over.
            self._wait_for_keys(pending)
            return
        except HttpError as error:
            self._answer_error(error)
            return
        if identity is not None:
            self.claim_headers = identity.headers
        if policy is not None and policy.remote:
            self._wait_for_limits(policy, req, identity, decision)
            return
        self._proceed(req, decision)

    def _wait_for_keys(self, pending: KeysPending) -> None:
        self.waiting = True
        exchange = self.exchange
        pending.wait(lambda: self._after_keys(exchange))

    def _wait_for_limits(self, policy: Any, req: Any, identity: Any, decision: Any) -> None:
        self.waiting = True
        exchange = self.exchange
        policy.limit_redis(
            req, self.client_ip, identity, lambda error: self._after_limits(exchange, decision, error)
        )

    def _stop_waiting(self, exchange: int) -> bool:
        if self.exchange != exchange or self.state != ACTIVE:
            return False  # the client left meanwhile
        self.waiting = False
        if self.paused & P_POLICY:
            self._resume(P_POLICY)
        return True

    def _after_keys(self, exchange: int) -> None:
        if self._stop_waiting(exchange):
            self._route(self.req, False)

    def _after_limits(self, exchange: int, decision: Any, error: HttpError | None) -> None:
        if not self._stop_waiting(exchange):
            return
        if error is not None:
            self._answer_error(error)
        else:
            self._proceed(self.req, decision)

    def _proceed(self, req: Any, decision: Any) -> None:
        ctx = self.ctx
        rid = self.request_id
        self.decision = decision
        endpoint = decision.endpoint
        settings = endpoint.pool
        timeout = settings.request_timeout
        now = perf_counter()
        self.timer = T_RESPONSE
        self.exchange_deadline = now + timeout if timeout > 0 else math.inf
        self.resp_idle = settings.response_idle_timeout
        head = self._upstream_head(req, decision, rid)
        if self.req_done and req.method in IDEMPOTENT and not req.upgrade:
            self.retry_head = head
        self.pending = [head]
        self.pending_bytes = 0
        # Body bytes that came with the head travel in the same write.
        if not self.req_done and self.buf:
            rest = self.buf
            self.buf = b""
            rest = self._request_body(rest)
            if self.state != ACTIVE:
                return
            self.buf = rest
        if decision.mirror is not None:
            self._mirror(decision)
        if self.req_done:
            deadline = now + settings.response_head_timeout
            if deadline < self.exchange_deadline:
                self.exchange_deadline = deadline
            self.deadline = self.exchange_deadline
        else:
            self.deadline = self._next_deadline()
        pool = ctx.pools.for_endpoint(endpoint)
        self.pool = pool
        conn = pool.acquire()
        if conn is not None:
            ctx.stats.pool_hits += 1
            self._attach(conn, True, now)
        else:
            ctx.stats.pool_misses += 1
            self.loop.create_task(self._connect(pool, self.exchange))

    def _mirror(self, decision: Any) -> None:
        """Send a shadow copy when the whole request is already here (see proxy.http.mirror)."""
        mirror = self.ctx.mirror
        if not self.req_done:
            mirror.stats.skipped_body += 1
            return
        pending = self.pending
        body = b"".join(pending[1:]) if len(pending) > 1 else b""
        if len(body) > MAX_MIRROR_BODY:
            mirror.stats.skipped_body += 1
            return
        max_pending = self.ctx.table.routes[decision.route_id].mirror.max_pending
        mirror.submit(decision.route_id, max_pending, decision.mirror, pending[0], body)

    def _upstream_head(self, req: Any, decision: Any, rid: bytes) -> bytes:
        target = req.target
        if target[:1] != b"/" and target != b"*":
            target = req.path + (b"?" + req.query if req.query else b"")
        headers = req.forward_headers
        route_target = decision.target
        if route_target.request_remove is not None:
            headers = drop_header_lines(headers, route_target.request_remove)
        parts = [req.method, b" ", target, b" HTTP/1.1\r\n", headers]
        if req.xff:
            parts.append(b"X-Forwarded-For: ")
            parts.append(req.xff)
            parts.append(b", ")
            parts.append(self.xff_tail)
            parts.append(CRLF)
            parts.append(self.proto_line)
        else:
            parts.append(self.forwarded_lines)
        host = req.host
        if host is not None:
            parts.append(b"X-Forwarded-Host: ")
            parts.append(host)
            parts.append(CRLF)
        else:
            parts.append(b"Host: " + decision.endpoint.address.encode() + CRLF)
        if req.request_id is None:
            parts.append(b"X-Request-ID: ")
            parts.append(rid)
            parts.append(CRLF)
        if self.trace_out is not None:
            parts.append(b"traceparent: ")
            parts.append(self.trace_out)
            parts.append(CRLF)
        if req.tracestate is not None and self.trace_continued:
            parts.append(b"tracestate: ")
            parts.append(req.tracestate)
            parts.append(CRLF)
        if self.claim_headers:
            parts.append(self.claim_headers)
        if req.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if req.upgrade is not None:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + req.upgrade + CRLF)
        via = self.ctx.via11 if req.http_minor == 1 else self.ctx.via10
        if via:
            parts.append(via)
        parts.append(route_target.request_extra)
        parts.append(CRLF)
        return b"".join(parts)

    def _request_body(self, data: bytes) -> bytes:
        """Forward the body bytes in ``data``; return what follows the body (a pipelined request)."""
        decoder = self.decoder
        if decoder is None:
            remaining = self.body_remaining
            if len(data) <= remaining:
                piece = data
                rest = b""
            else:
                piece = data[:remaining]
                rest = data[remaining:]
            self.body_remaining = remaining - len(piece)
            if piece:
                self.bytes_in += len(piece)
                self._send_up(piece)
        else:
            try:
                _, used = decoder.feed(data)
            except HttpError as error:
                self._fail(error)
                return b""
            # The strict decoder has checked the framing: the bytes go up as they came.
            if used:
                self.bytes_in += used
                self._send_up(data[:used] if used < len(data) else data)
            rest = data[used:]
            if not decoder.done:
                self.body_seen = perf_counter()
                return rest
        if self.body_remaining == 0 and (decoder is None or decoder.done):
            self.req_done = True
            if self.timer == T_RESPONSE and self.resp_mode == -1:
                settings = self.decision.endpoint.pool
                deadline = perf_counter() + settings.response_head_timeout
                if deadline < self.exchange_deadline:
                    self.exchange_deadline = deadline
                self.deadline = self._next_deadline()
        else:
            self.body_seen = perf_counter()
        return rest

    def _send_up(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            self.ctx.send(upstream.transport, data)
            return
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > MAX_PENDING:
            self._pause(P_CONNECTING)

    # --- the upstream connection -----------------------------------------------

    async def _connect(self, pool: Any, exchange: int) -> None:
        ctx = self.ctx
        attempts = 0
        while True:
            try:
                conn = await pool.connect()
                break
            except UpstreamError as error:
                decision = self.decision
                endpoint = decision.endpoint if decision is not None else None
                if endpoint is not None and endpoint.key == (pool.host, pool.port):
                    ctx.counters.connect_error(endpoint.service, endpoint.version, endpoint.address)
                    if ctx.health is not None:
                        ctx.health.record(endpoint, False)
                if self.exchange != exchange or self.state != ACTIVE:
                    return
                # Nothing was sent yet: another endpoint of the same version may take it.
                other = self._other_endpoint(endpoint, attempts)
                if other is None:
                    self._fail(error)
                    return
                attempts += 1
                ctx.stats.retries += 1
                decision.endpoint = other
                pool = self.pool = ctx.pools.for_endpoint(other)
                conn = pool.acquire()
                if conn is not None:
                    break
        if self.exchange != exchange or self.state != ACTIVE:
            # The client left meanwhile; the fresh connection is still clean.
            pool.release(conn, perf_counter())
            return
        self._attach(conn, False, perf_counter())

    def _other_endpoint(self, failed: Any, attempts: int) -> Any:
        """A different endpoint of the chosen version for a connect retry, or None."""
        if failed is None or attempts >= MAX_CONNECT_RETRIES:
            return None
        group = self.decision.target.group
        # Not "fewer than two": the failure may just have ejected ``failed``, leaving one other.
        if group.next is None:
            return None
        for _ in range(len(group.endpoints)):
            candidate = group.next()
            if candidate is not failed:
                return candidate
        return None

    def _attach(self, conn: Upstream, reused: bool, now: float) -> None:
        self.upstream = conn
        self.upstream_attached = True
        self.t_sent = now
        self.reused = reused
        conn.owner = self
        if self.writing_paused:
            conn.pause_reading()
        pending = self.pending
        self.pending = None
        self.ctx.send(conn.transport, b"".join(pending) if len(pending) > 1 else pending[0])
        if self.paused & P_CONNECTING:
            self._resume(P_CONNECTING)
        req = self.req
        if req.expect_continue and not self.req_done and req.http_minor == 1 and not self.sent_continue:
            self.sent_continue = True
            self.ctx.send(self.transport, CONTINUE)

    def _upstream_write_paused(self, paused: bool) -> None:
        if paused:
            self._pause(P_UPSTREAM_FULL)
        else:
            self._resume(P_UPSTREAM_FULL)

    def _upstream_data(self, data: bytes) -> None:
        if self.state == TUNNEL:
            self.ctx.send(self.transport, data)
            return
        if self.resp_mode == -1:
            self._response_head(data)
        else:
            self._response_body(data)

    def _response_head(self, data: bytes) -> None:
        buf = self.resp_buf + data if self.resp_buf else data
        end = find_head_end(buf)
        if end == -1:
            if len(buf) > MAX_RESPONSE_HEAD:
                self._upstream_failed(UpstreamProtocolError("response head too large"))
            else:
                self.resp_buf = buf
            return
        self.resp_buf = b""
        size = end + 4
        try:
            resp = parse_response_head(buf[:size], RESPONSE_MAX_HEADERS)
        except HttpError as error:
            self._upstream_failed(error)
            return
        req = self.req
        status = resp.status
        body_len = len(buf) - size  # the body bytes that came with the head: sliced where needed
        if status < 200 and status != 101:
            # Interim responses go to HTTP/1.1 clients, except a 100 we already sent ourselves.
            if req.http_minor == 1 and not (status == 100 and self.sent_continue):
                line = b"HTTP/1.1" + resp.status_line[8:]
                self.ctx.send(self.transport, line + resp.forward_headers + CRLF)
            if body_len:
                self._response_head(buf[size:])
            return
        if status == 101:
            if req.upgrade is None:
                self._upstream_failed(UpstreamProtocolError("101 without an upgrade request"))
            else:
                self._start_tunnel(resp, buf[size:])
            return
        self.status = status
        health = self.ctx.health
        if health is not None and (status >= 500 or health.failing):
            health.record(self.decision.endpoint, status < 500)
        if req.method == b"HEAD" or status == 204 or status == 304:
            mode = R_NONE
        elif resp.chunked:
            mode = R_CHUNKED
            self.resp_decoder = ChunkedDecoder(UpstreamProtocolError)
        elif resp.content_length >= 0:
            mode = R_LENGTH
            self.resp_remaining = resp.content_length
        else:
            mode = R_CLOSE
        self.resp_mode = mode
        self.upstream_reusable = resp.keep_alive and mode != R_CLOSE
        if mode != R_NONE and (mode != R_LENGTH or body_len < self.resp_remaining):
            # The body is still to come: the request timeout runs on, and the gap between reads.
            timeout = self.decision.endpoint.pool.request_timeout
            self.resp_seen = perf_counter()
            self.exchange_deadline = self.t_start + timeout if timeout > 0 else math.inf
            self.timer = T_RESPONSE
            self.deadline = self._next_deadline()

        route_target = self.decision.target
        if resp.http_minor == 1 and route_target.response_remove is None:
            # The usual case: the parser's pieces (status line and header lines) start the write;
            # ``resp`` is this method's alone, so its list is extended in place.
            parts = resp.pieces
        else:
            headers = resp.forward_headers
            if route_target.response_remove is not None:
                headers = drop_header_lines(headers, route_target.response_remove)
            status_line = resp.status_line
            parts = [status_line if resp.http_minor == 1 else b"HTTP/1.1" + status_line[8:], headers]
        via = self.ctx.via11 if resp.http_minor == 1 else self.ctx.via10
        if via:
            parts.append(via)
        keep = not self.close_after and self.ctx.draining is False
        if mode in (R_CHUNKED, R_CLOSE):
            if req.http_minor == 1:
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self.resp_chunk = mode == R_CLOSE  # chunked passes through; close-delimited is framed
            else:
                keep = False  # an HTTP/1.0 client learns the end by the close
                if mode == R_CHUNKED:
                    self.resp_chunk = False
        if not keep:
            self.close_after = True
            if req.http_minor == 1:
                parts.append(b"Connection: close\r\n")
        elif req.http_minor == 0:
            parts.append(b"Connection: keep-alive\r\n")
        if req.request_id is None:
            parts.append(b"X-Request-ID: ")
            parts.append(self.request_id)
            parts.append(CRLF)
        parts.append(route_target.response_extra)
        parts.append(CRLF)
        if mode == R_LENGTH and body_len <= self.resp_remaining:
            # The usual case: the body, or its start, came with the head; one join makes the write.
            # A large body joins from a view of the read, copied once instead of twice.
            if body_len:
                parts.append(buf[size:] if body_len < 2048 else memoryview(buf)[size:])
            out = b"".join(parts)
            remaining = self.resp_remaining - body_len
            self.resp_remaining = remaining
            self.resp_started = True
            self.bytes_out += len(out)
            self.ctx.send(self.transport, out)
            if remaining == 0:
                self._response_done()
            return
        head = b"".join(parts)
        if mode == R_NONE:
            self.resp_started = True
            self.bytes_out += len(head)
            self.ctx.send(self.transport, head)
            if body_len:
                self.upstream_reusable = False
            self._response_done()
            return
        self._response_body(buf[size:], head)

    def _response_body(self, data: bytes, head: bytes = b"") -> None:
        mode = self.resp_mode
        done = False
        if mode == R_LENGTH:
            remaining = self.resp_remaining
            if len(data) >= remaining:
                if len(data) > remaining:
                    self.upstream_reusable = False
                    data = data[:remaining]
                done = True
            self.resp_remaining = remaining - len(data)
            out = data
        elif mode == R_CHUNKED:
            decoder = self.resp_decoder
            try:
                pieces, used = decoder.feed(data)
            except HttpError as error:
                self._upstream_failed(error)
                return
            if decoder.done:
                done = True
                if used < len(data):
                    self.upstream_reusable = False
                data = data[:used]
            if self.req.http_minor == 1:
                out = data  # validated framing passes through unchanged
            else:
                # An HTTP/1.0 client gets the decoded bytes, ended by the close.
                out = b"".join(pieces)
        else:  # R_CLOSE: the upstream's close ends the body
            out = http1.chunk(data) if self.resp_chunk and data else data
        if head:
            # The response starts only here: an error above still gets a clean 502.
            self.resp_started = True
            out = head + out if out else head
        if out:
            self.bytes_out += len(out)
            self.ctx.send(self.transport, out)
        if done:
            self._response_done()
        elif self.resp_idle > 0:
            self.resp_seen = perf_counter()

    def _start_tunnel(self, resp: Any, rest: bytes) -> None:
        head = b"".join(
            (
                resp.status_line,
                resp.forward_headers,
                self.ctx.via11,
                b"Connection: upgrade\r\nUpgrade: ",
                resp.upgrade or self.req.upgrade,
                CRLF,
                CRLF,
                rest,
            )
        )
        self.state = TUNNEL
        self.status = 101
        self.resp_started = True
        self._arm(T_NONE, math.inf)
        self.ctx.send(self.transport, head)
        if self.buf:
            # Bytes the client sent after its upgrade request belong to the new protocol.
            self.ctx.send(self.upstream.transport, self.buf)
            self.buf = b""
        if self.paused & P_PIPELINE:
            self._resume(P_PIPELINE)
        self._account(101)

    def _upstream_lost(self, conn: Upstream) -> None:
        """The upstream closed (or reset) while leased to this exchange."""
        if self.upstream is not conn:
            return
        self.upstream = None
        self.pool.active -= 1
        if self.state == TUNNEL:
            self.state = CLOSED
            self.transport.close()
            return
        mode = self.resp_mode
        if mode == R_CLOSE:
            if self.resp_chunk:
                self.ctx.send(self.transport, http1.LAST_CHUNK)
            self.upstream_reusable = False
            self._response_done()
        elif mode == -1 and not self.resp_buf and self.reused and self.retry_head and not self.retried:
            # A pooled connection the server had closed: try once more on a fresh one.
            self.retried = True
            self.ctx.stats.retries += 1
            self.pending = [self.retry_head]
            self.loop.create_task(self._connect(self.pool, self.exchange))
        else:
            self._fail(UpstreamReset("upstream closed the connection"))

    def _upstream_failed(self, error: HttpError) -> None:
        self._fail(error)

    # --- ending an exchange ------------------------------------------------------

    def _response_done(self) -> None:
        now = perf_counter()
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.owner = None
            conn.resume_reading()
            if self.upstream_reusable and self.req_done:
                self.pool.release(conn, now)
            else:
                self.pool.discard(conn)
        self._account(self.status, "-", now)
        if not self.req_done:
            # The client is still sending a body nobody will read: end the connection, lingering
            # so that the answer is read before the close.
            self._linger()
            return
        self._finish_exchange()

    def _finish_exchange(self) -> None:
        if self.close_after or self.ctx.draining:
            self._close()
            return
        self._reset_exchange()
        self.state = IDLE
        # From when the exchange was counted (just before): one clock read less per request.
        self.timer = T_KEEPALIVE
        self.t_idle = self.t_done
        self.deadline = self.t_done + self.keepalive_timeout
        if self.paused & P_PIPELINE:
            self._resume(P_PIPELINE)
        if self.paused & P_UPSTREAM_FULL:
            self._resume(P_UPSTREAM_FULL)
        if self.buf:
            self._next_request()
        if self.client_eof and self.state == IDLE:
            self._close()  # no complete request is left and no more bytes will come

    def _fail(self, error: HttpError) -> None:
        """End the exchange with ``error``: answer it if nothing was sent yet, else cut the connection."""
        if self.state != ACTIVE:
            return
        self._drop_upstream()
        ctx = self.ctx
        stats = ctx.stats
        stats.count_error(error.flag)
        if isinstance(error, UpstreamTimeout):
            stats.upstream_timeouts += 1
        if (
            ctx.health is not None
            and isinstance(error, UpstreamError)
            and self.decision is not None
            and self.upstream_attached
        ):
            # Connect failures were recorded where they happened.
            ctx.health.record(self.decision.endpoint, False)
        if self.resp_started:
            log.debug("request %s failed after the response started: %s", self.request_id, error)
            self._account(self.status, error.flag)
            self._close()
            return
        if not self.req_done or error.close:
            self.close_after = True
        self.status = error.status
        head_only = self.req is not None and self.req.method == b"HEAD"
        response = error_response(error, self.request_id, self.close_after, head_only)
        # The client may still be sending after a refusal: it reads the answer first.
        self._send_answer(response, error.status, error.flag, not self.req_done or error.close)

    def _answer_local(self, status: int, extra: bytes, content_type: bytes, body: bytes) -> None:
        """A response graylane gives itself that is not an error (OPTIONS with Max-Forwards: 0 ...)."""
        if not self.req_done:
            self.close_after = True
        response = local_response(status, extra, content_type, body, self.request_id, self.close_after)
        self._send_answer(response, status, "-", not self.req_done)

    def _send_answer(self, response: bytes, status: int, flag: str, linger: bool) -> None:
        """Write graylane's own answer, count the exchange, then go on (or linger and close)."""
        self.status = status
        self.bytes_out += len(response)
        self.ctx.send(self.transport, response)
        self._account(status, flag)
        if linger:
            self._linger()
        else:
            self._finish_exchange()

    def _answer_error(self, error: HttpError) -> None:
        """An error graylane answers itself before any upstream was involved (404, 503 ...)."""
        self._fail(error)

    def _reject(self, error: HttpError) -> None:
        """A request that could not be parsed: answer and close (nothing after it can be trusted)."""
        ctx = self.ctx
        ctx.stats.count_rejected(str(error.status))
        ctx.stats.count_error(error.flag)
        if self.state == CLOSED:
            return
        self.request_id = ctx.new_request_id()
        response = error_response(error, self.request_id, True)
        self.bytes_out = len(response)
        self.ctx.send(self.transport, response)
        self._account(error.status, error.flag)
        self._linger()

    def _drop_upstream(self) -> None:
        conn = self.upstream
        if conn is not None:
            self.upstream = None
            self.pool.discard(conn)
        self.pending = None

    def _account(self, status: int, flag: str = "-", now: float = 0.0) -> None:
        """Count one finished request: process totals and the per-(route, version) counters.

        ``now`` is perf_counter() when the caller has just read it (0: read it here).
        """
        ctx = self.ctx
        stats = ctx.stats
        stats.requests += 1
        stats.responses_by_class[status // 100] += 1
        decision = self.decision
        slot = decision.target.stats_slot if decision is not None else 0
        if now == 0.0:
            now = perf_counter()
        self.t_done = now
        started = self.t_start
        duration = now - started if started else 0.0
        ctx.counters.record(slot, status, duration, self.bytes_in, self.bytes_out)
        access_log = ctx.access_log
        if access_log is not None:
            req = self.req
            sent = self.t_sent
            if decision is not None:
                target = decision.target
                route_name = target.route_name
                version_name = target.version_name
                address = decision.endpoint.address
                labels = decision.labels
                sticky_hash = decision.sticky_hash
            else:
                route_name = version_name = address = ""
                labels = None
                sticky_hash = -1
            entry = (
                time.time() - duration,
                self.request_id,
                self.client_ip,
                req.method if req is not None else None,
                req.path if req is not None else None,
                status,
                self.bytes_in,
                self.bytes_out,
                duration,
                now - sent if sent else -1.0,
                route_name,
                version_name,
                address,
                labels,
                sticky_hash,
                flag,
            )
            access_log.log(entry)
            exporter = ctx.exporter
            if exporter is not None:
                incoming = req.traceparent if req is not None else None
                exporter.export(entry, self.trace_out, incoming, req.host if req is not None else None)

    def _close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self._drop_upstream()
        self.ctx.flush()  # what this connection was sent this iteration goes out before the close
        self.transport.close()  # and the transport flushes its own buffer first

    def _linger(self) -> None:
        """Close after a refusal the way RFC 9112 9.6 asks: send the answer and a FIN, then read
        and drop what the client still sends, until it closes, falls silent for LINGER_IDLE,
        LINGER_TIME has passed or LINGER_MAX_BYTES were dropped."""
        if self.state >= LINGER:
            return
        self._drop_upstream()
        self.state = LINGER
        self.buf = b""
        self.waiting = False
        self.ctx.flush()
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()  # after the answer; TLS cannot half-close and just keeps reading
        if self.paused:
            self.paused = 0
            transport.resume_reading()
        now = perf_counter()
        self.body_seen = now
        self.linger_until = now + LINGER_TIME
        self.lingered = 0
        self.timer = T_LINGER
        self.deadline = now + LINGER_IDLE

    def _linger_read(self, size: int) -> None:
        self.lingered += size
        if self.lingered > LINGER_MAX_BYTES:
            self._close()
        else:
            self.body_seen = perf_counter()

    def evict(self) -> None:
        """Close this connection to make room at the connection cap (it has no request in flight)."""
        if self.state == LINGER:
            self.transport.abort()  # its answer has had its chance; it would reset anyway
            self.state = CLOSED
        else:
            self._close()

    # --- flow control and timers ---------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self.paused and self.state != CLOSED:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused:
            return
        self.paused &= ~reason
        if not self.paused and self.state != CLOSED:
            self.transport.resume_reading()

    def _arm(self, kind: int, seconds: float) -> None:
        self.timer = kind
        self.deadline = perf_counter() + seconds

    def _next_deadline(self) -> float:
        """The earliest of the exchange's three deadlines (see the module docstring)."""
        deadline = self.exchange_deadline
        if not self.req_done:
            body = self.body_seen + self.body_timeout
            if body < deadline:
                deadline = body
        if self.resp_mode > R_NONE and self.resp_idle > 0:
            idle = self.resp_seen + self.resp_idle
            if idle < deadline:
                deadline = idle
        return deadline

    def on_timer(self, now: float) -> None:
        """Called by the server's sweep once ``deadline`` has passed."""
        kind = self.timer
        self.deadline = math.inf
        if kind == T_KEEPALIVE:
            self._close()
        elif kind == T_HEAD:
            if self.buf:
                self._reject(RequestTimeout("request head not received in time"))
            else:
                self._close()
        elif kind == T_RESPONSE:
            if not self.req_done and self.body_seen + self.body_timeout <= now:
                # A trickled body: the upstream request is aborted, the client told 408.
                self._fail(RequestTimeout("request body not received in time"))
            elif self.resp_mode > R_NONE and self.resp_idle > 0 and self.resp_seen + self.resp_idle <= now:
                self._fail(UpstreamTimeout("upstream stalled in the response body"))
            elif self.exchange_deadline <= now:
                self._fail(UpstreamTimeout("upstream did not answer in time"))
            else:
                self.deadline = self._next_deadline()  # a read since: not yet
        elif kind == T_LINGER:
            if now >= self.linger_until or now - self.body_seen >= LINGER_IDLE:
                self._close()
            else:
                self.timer = T_LINGER
                self.deadline = min(self.linger_until, self.body_seen + LINGER_IDLE)

    def close_if_idle(self) -> None:
        """Drain: close a keep-alive connection that has no exchange in progress."""
        if self.state == IDLE and not self.buf:
            self._close()


DOT_SEGMENTS = frozenset([b".", b"..", b"%2e", b"%2e%2e", b".%2e", b"%2e."])


# True in the compiled twin, whose __file__ is the extension (see proxy._fast.http1).
_COMPILED = not __file__.endswith(".py")


def _may_have_dot_segment(path: bytes) -> bool:
    """Whether ``path`` has "/." or "%2" in it: only then can ``has_dot_segment`` be true.

    Compiled, one pass over the bytes; plain, two finds (a byte loop is slower in Python).
    """
    if not _COMPILED:
        return path.find(b"/.") != -1 or path.find(b"%2") != -1
    data = path
    i = 1
    n = len(path)
    while i < n:
        c = data[i]
        if (c == 0x2E and data[i - 1] == 0x2F) or (c == 0x32 and data[i - 1] == 0x25):  # "/." or "%2"
            return True
        i += 1
    return False


def has_dot_segment(path: bytes) -> bool:
    """Whether ``path`` has a "." or ".." segment, plain or percent-encoded.

    Routes match the path as sent; ``/public/../admin`` would match a ``/public`` route
    and reach ``/admin`` upstream, so such paths are refused (browsers never send them).
    """
    return any(segment.lower() in DOT_SEGMENTS for segment in path.split(b"/"))
