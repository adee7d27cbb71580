"""The configuration schema: frozen msgspec Structs, the public shape of a config file.

Everything here is data with defaults; checks that span fields (a route naming an
unknown service, weights that sum to zero...) live in ``proxy.config.validate`` and
the compile to lookup tables in ``proxy.config.compile``. Unknown fields are
rejected everywhere (``forbid_unknown_fields``).
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Duration(float):
    """Seconds; written in a file as ``250ms``, ``30s``, ``5m``, ``1h`` or a bare number."""


class Size(int):
    """Bytes; written in a file as ``512``, ``16KiB``, ``1MiB`` (also ``k``/``m``)."""


class _Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


# --- listeners and limits ---------------------------------------------------


class TLS(_Base):
    cert: str
    key: str


class Listener(_Base):
    address: str  # "host:port"; host may be an IPv4 address, [IPv6] or a name
    name: str = "main"
    tls: TLS | None = None


class ClientLimits(_Base):
    """Limits on the downstream (client) side; defaults are close to nginx's."""

    max_header_bytes: Size = Size(32 * 1024)  # whole request head -> 431
    max_uri_bytes: Size = Size(8 * 1024)  # request-target -> 414
    max_headers: int = 100  # header count -> 431
    request_head_timeout: Duration = Duration(10.0)  # time to receive a head -> 408
    keepalive_timeout: Duration = Duration(60.0)  # idle keep-alive connection -> close
    max_connections: int = 10_000  # accept pauses at this many client connections
    drain_timeout: Duration = Duration(30.0)  # SIGTERM: deadline for in-flight requests


class Pool(_Base):
    """Upstream connection pool and timeouts, per endpoint."""

    max_idle: int = 64  # idle keep-alive connections kept per endpoint
    idle_timeout: Duration = Duration(60.0)
    connect_timeout: Duration = Duration(5.0)
    response_head_timeout: Duration = Duration(60.0)  # request sent -> response head
    request_timeout: Duration = Duration(300.0)  # whole exchange; 0 disables


# --- services and versions --------------------------------------------------


class HeaderOps(_Base):
    """Header changes: ``set`` replaces, ``add`` appends, ``remove`` drops (names are case-insensitive)."""

    set: dict[str, str] = {}
    add: dict[str, str] = {}
    remove: list[str] = []


class Version(_Base):
    endpoints: list[str] = []  # "host:port"
    labels: dict[str, str] = {}
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()


class Service(_Base):
    versions: dict[str, Version]
    stable: str | None = None  # default: the first version listed
    pool: Pool | None = None  # default: the top-level ``upstream``
    # What happens to the share of a version that has no endpoints.
    on_empty_version: Literal["stable", "503"] = "stable"


# --- matching -----------------------------------------------------------------


class StringMatch(_Base):
    """Exactly one of the fields is set."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None  # full match, Python ``re`` syntax
    present: bool | None = None  # True: must be present; False: must be absent


class PathMatch(_Base):
    """Exactly one of the fields is set."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class Match(_Base):
    host: list[str] = []  # any of; "*.example.com" allowed; empty = any host
    path: PathMatch | None = None  # None = any path
    methods: list[str] = []  # empty = any method
    headers: dict[str, StringMatch] = {}
    query: dict[str, StringMatch] = {}
    cookies: dict[str, StringMatch] = {}
    labels: dict[str, StringMatch] = {}  # request-metadata labels


class ContentRule(_Base):
    """Send requests that match to a named version, before any split."""

    match: Match
    version: str


class SplitEntry(_Base):
    version: str
    weight: int


class Sticky(_Base):
    """Where the sticky key comes from: exactly one source."""

    header: str | None = None
    cookie: str | None = None
    client_ip: bool = False
    salt: str | None = None  # default: the route's name


class Mirror(_Base):
    version: str
    percent: float = 100.0
    max_pending: int = 100  # mirror requests queued or in flight; beyond it they are dropped


class Route(_Base):
    name: str
    service: str
    match: Match = Match()
    rules: list[ContentRule] = []
    split: list[SplitEntry] = []  # empty: everything to the stable version
    sticky: Sticky | None = None
    mirror: Mirror | None = None
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()


class Metadata(_Base):
    """Request-metadata labels: a JSON object of strings in one request header."""

    header: str = "X-Request-Metadata"
    strip: bool = False  # remove the header before forwarding
    max_bytes: Size = Size(4096)


class Observability(_Base):
    version_header: str | None = None  # e.g. "X-Graylane-Version"; off by default
    request_id_header: str = "X-Request-ID"


class Admin(_Base):
    """The admin API's own listener (off unless configured)."""

    address: str = "127.0.0.1:9901"
    token: str | None = None  # bearer token; required when the address is not loopback


# --- access log and tracing ---------------------------------------------------


class AccessLog(_Base):
    """One JSON line per request, written in batches (``proxy.observe.accesslog``)."""

    enabled: bool = True
    path: str | None = None  # None or "-": standard output; a file is opened in append mode
    flush_interval: Duration = Duration(0.2)  # pending lines are written at least this often
    max_batch: int = 512  # ... and as soon as this many are pending


class Tracing(_Base):
    """W3C traceparent propagation, and optional span export over OTLP/HTTP (``proxy.observe.tracing``)."""

    enabled: bool = True
    otlp_endpoint: str | None = None  # e.g. "http://collector:4318"; needs the graylane[otel] extra
    service_name: str = "graylane"


class Config(_Base):
    version: Literal[1]
    listeners: list[Listener]
    services: dict[str, Service]
    routes: list[Route] = []
    limits: ClientLimits = ClientLimits()
    upstream: Pool = Pool()
    metadata: Metadata = Metadata()
    observability: Observability = Observability()
    admin: Admin | None = None
    # Worker processes sharing the listeners (SO_REUSEPORT); "auto" = one per CPU core.
    workers: int | Literal["auto"] = 1
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: AccessLog = AccessLog()
    tracing: Tracing = Tracing()
