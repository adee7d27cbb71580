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
    cert: str  # PEM files; a relative name is relative to the config file's directory
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
    # Client connections at most; the cap in force is also bounded by RLIMIT_NOFILE (proxy.runtime.fdcap).
    # At the cap the oldest idle connections are closed to make room (none idle: accepting pauses).
    max_connections: int = 10_000
    drain_timeout: Duration = Duration(30.0)  # SIGTERM: deadline for in-flight requests
    request_body_timeout: Duration = Duration(10.0)  # between two reads of a request body -> 408
    # False (nginx's proxy_ignore_client_abort off): a client's FIN while its answer is awaited ends
    # the exchange and aborts the upstream request. True: a half-closed client still gets its answers.
    ignore_client_abort: bool = False


class Pool(_Base):
    """Upstream connection pool and timeouts, per endpoint."""

    max_idle: int = 64  # idle keep-alive connections kept per endpoint
    idle_timeout: Duration = Duration(60.0)
    connect_timeout: Duration = Duration(5.0)
    response_head_timeout: Duration = Duration(60.0)  # request sent -> response head
    response_idle_timeout: Duration = Duration(60.0)  # between two reads of a response body; 0 disables
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
    health: HealthCheck | None = None  # active HTTP checks of every endpoint of every version
    outlier: Outlier | None = None  # passive ejection of endpoints that keep failing


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
    claims: dict[str, StringMatch] = {}  # claims of the route's verified JWT (``auth``); "a.b" = nested


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
    claim: str | None = None  # a claim of the route's verified JWT, e.g. "sub"
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
    rollout: Rollout | None = None  # progressive delivery of a canary version (overrides its weight)
    auth: Auth | None = None  # checked before the version is chosen (proxy.policy)
    rate_limits: list[RateLimit] = []  # every one must admit the request (checked after auth)


class Metadata(_Base):
    """Request-metadata labels: a JSON object of strings in one request header."""

    header: str = "X-Request-Metadata"
    strip: bool = False  # remove the header before forwarding
    max_bytes: Size = Size(4096)


class Observability(_Base):
    version_header: str | None = None  # e.g. "X-Graylane-Version"; off by default


class Protocol(_Base):
    """HTTP rules at the edge that are a choice, not a must (proxy._fast.http1, proxy._fast.exchange)."""

    # Via (RFC 9110 7.6.3) added to requests and responses as "1.1 <via>"; false or "" = none.
    via: str | bool = "graylane"
    # A request header name holding "_" (Content_Length, X_User): "reject" answers 400, "drop"
    # removes the line (nginx's underscores_in_headers off). Never forwarded: many origin stacks
    # (CGI/WSGI environ) fold "_" and "-" together, so it would alias a header graylane checked.
    headers_with_underscores: Literal["reject", "drop"] = "reject"
    # TRACE with Max-Forwards: 0 is answered by graylane itself (the request reflected as
    # message/http) when true, refused with 405 when false (its echo can leak credentials).
    trace: bool = False


class Admin(_Base):
    """The admin API's own listener (off unless configured)."""

    address: str = "127.0.0.1:9901"
    token: str | None = None  # bearer token; required when the address is not loopback


# --- access log and tracing ---------------------------------------------------


class AccessLog(_Base):
    """One JSON line per request, written in batches (``proxy.observe.accesslog``)."""

    enabled: bool = True
    # None or "-": standard output; a file (relative: to the config file's directory) is opened to append
    path: str | None = None
    flush_interval: Duration = Duration(0.2)  # pending lines are written at least this often
    max_batch: int = 64  # ... and as soon as this many are pending (a bigger batch stalls the loop longer)


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
    protocol: Protocol = Protocol()
    admin: Admin | None = None
    # Worker processes sharing the listeners (SO_REUSEPORT); "auto" = one per CPU core.
    workers: int | Literal["auto"] = 1
    # When the data plane writes: "batched" at the end of each loop iteration, "immediate" as it
    # goes, "auto" = batched with one worker, immediate with more (docs/performance.md).
    writes: Literal["auto", "batched", "immediate"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: AccessLog = AccessLog()
    tracing: Tracing = Tracing()
    redis: RedisSettings | None = None  # needed by rate limits with ``backend: redis``
    # A factory: RolloutSettings is defined further down, with the rest of proxy.rollout's schema.
    rollouts: RolloutSettings = msgspec.field(default_factory=lambda: RolloutSettings())


# --- progressive delivery (proxy.rollout) -------------------------------------


class PauseUntil(_Base):
    """``pause: {}`` waits for ``graylane rollout promote``; ``pause: {duration: 10m}`` = ``pause: 10m``."""

    duration: Duration | None = None


class RolloutStep(_Base):
    """Exactly one of the fields is set."""

    set_weight: int | None = None  # the canary's share of the split, in percent (0..100)
    # "10m" or 600 (seconds): a timed pause; {} : until promoted. (A union with Duration is not
    # possible in msgspec, so timed pauses are parsed by proxy.rollout.spec and checked by validate.)
    pause: PauseUntil | str | float | None = None


class Analysis(_Base):
    """Checks of the canary's own counters, every ``interval``, over that interval.

    A check fails when the canary's error ratio (5xx, which includes graylane's 502/504 for
    connect failures and timeouts) reaches ``max_error_rate``, its p99 latency reaches
    ``max_p99``, or it is worse than the stable version's by more than the allowed increase.
    With fewer than ``min_requests`` requests a check is inconclusive.
    """

    interval: Duration = Duration(30.0)
    min_requests: int = 20
    max_error_rate: float | None = 0.05  # a ratio: 0.05 = 5%
    max_p99: Duration | None = None
    max_error_rate_increase: float | None = None  # canary ratio <= stable ratio + this
    max_p99_increase: Duration | None = None  # canary p99 <= stable p99 + this
    failure_limit: int = 3  # failed checks (in all, not in a row) that abort the rollout
    max_inconclusive: int | None = None  # inconclusive checks in a row that pause it (None: never)


WebhookEvent = Literal["step", "promoted", "aborted"]


class Webhook(_Base):
    """An HTTP POST with a JSON body describing the rollout.

    ``step`` is called before each step begins and a non-2xx answer holds the step;
    ``promoted`` and ``aborted`` only inform. Failed calls are retried with back-off
    (``backoff``, doubling, at most ``retries`` more times); no call ever delays traffic.
    """

    name: str
    url: str  # http://host:port/path or https://...
    events: list[WebhookEvent] = msgspec.field(default_factory=lambda: ["step", "promoted", "aborted"])
    timeout: Duration = Duration(5.0)
    retries: int = 3
    backoff: Duration = Duration(1.0)
    headers: dict[str, str] = {}


class Rollout(_Base):
    canary: str  # the version being rolled out; the route's other versions keep their ratios
    steps: list[RolloutStep]
    analysis: Analysis | None = None
    webhooks: list[Webhook] = []  # in addition to rollouts.webhooks


class RolloutSettings(_Base):
    # rollouts.json is kept here (atomic write + fsync); relative: to the config file's directory
    state_dir: str = "/var/lib/graylane"
    webhooks: list[Webhook] = []  # called for every rollout


# --- endpoint health (proxy.health) -------------------------------------------


class HealthCheck(_Base):
    """Active checks: ``GET path`` to every endpoint every ``interval``."""

    path: str = "/healthz"
    interval: Duration = Duration(5.0)
    timeout: Duration = Duration(2.0)
    expected_statuses: list[int] = msgspec.field(default_factory=lambda: [200])
    healthy_threshold: int = 2  # passes in a row that make an unhealthy endpoint healthy again
    unhealthy_threshold: int = 3  # failures in a row that take an endpoint out
    host: str | None = None  # the Host header; default the endpoint's address


class Outlier(_Base):
    """Passive ejection: an endpoint answering 5xx (or refusing connections) too often rests."""

    consecutive_errors: int = 5
    base_ejection_time: Duration = Duration(30.0)  # times the number of ejections so far
    max_ejection_time: Duration = Duration(300.0)
    max_ejection_percent: float = 50.0  # of a version's endpoints (at least one may go when > 0)


# --- policies: JWT authentication and rate limits (``proxy.policy``) ------------------


class Jwt(_Base):
    """Verify a JWT on each request of a route. At least one key source is set."""

    algorithms: list[str]  # e.g. ["RS256"]; "none" is never accepted
    issuers: list[str] = []  # the token's iss must be one of them; empty = not checked
    audiences: list[str] = []  # the token's aud must name one of them; empty = not checked
    leeway: Duration = Duration(30.0)  # clock skew allowed when checking exp, nbf and iat
    required_claims: list[str] = []  # claims that must be present, e.g. ["exp", "sub"]
    # A token without exp is refused: it would be a standing credential (and verified tokens are
    # cached until they expire). false accepts such tokens (re-verified every 5 minutes).
    require_exp: bool = True
    # Keys. A secret verifies HS* only; PEM and JWKS keys verify RS*/PS*/ES*/EdDSA only.
    secret: str | None = None  # the HS* shared secret; write "${JWT_SECRET}", not the secret itself
    # Files: a relative name is relative to the config file's directory.
    public_keys: list[str] = []  # PEM files (public keys or certificates)
    jwks_file: str | None = None  # a JWKS document (JSON)
    jwks_url: str | None = None  # fetched in the background, looked up by kid
    jwks_refresh: Duration = Duration(300.0)  # how often the JWKS URL is fetched again
    jwks_cooldown: Duration = Duration(30.0)  # least time between fetches caused by unknown kids
    jwks_timeout: Duration = Duration(5.0)
    # Where the token is: "Authorization: Bearer" unless a header or a cookie is named.
    header: str | None = None
    cookie: str | None = None
    allow_missing: bool = False  # a request without a token passes (without claims); a bad token never
    forward_token: bool = True  # False: the token's header is not sent upstream
    forward_claims: dict[str, str] = {}  # claim -> request header, e.g. {sub: X-User-ID}
    cache_size: int = 10_000  # verified tokens kept until they expire
    realm: str = "graylane"  # in WWW-Authenticate


class Auth(_Base):
    jwt: Jwt


class RateLimit(_Base):
    """A token bucket per key: ``rate`` requests per ``per`` on average, ``burst`` at once."""

    rate: float
    per: Duration = Duration(1.0)
    burst: int | None = None  # bucket size; default: rate (one period's worth), at least 1
    # Whose bucket: "client_ip", "route" (one bucket for the route), "header:NAME" or "claim:NAME".
    key: str = "client_ip"
    name: str | None = None  # in the RateLimit headers, logs and counters; default "<route>/<index>"
    backend: Literal["local", "redis"] = "local"  # local: this instance, all workers; redis: every instance
    shadow: bool = False  # count what would be limited, limit nothing
    on_redis_error: Literal["fail_open", "fail_closed"] = "fail_open"


class RedisSettings(_Base):
    url: str = "redis://127.0.0.1:6379/0"  # redis://[user:password@]host:port/db, rediss:// or unix://
    key_prefix: str = "graylane:rl:"
    timeout: Duration = Duration(0.25)  # per round trip; a slower answer counts as Redis being down
    connect_timeout: Duration = Duration(1.0)
    retry_interval: Duration = Duration(1.0)  # while Redis is down, how often it is tried again
    max_connections: int = 8  # round trips in flight at once (one pipeline each)
