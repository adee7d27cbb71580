"""One configured rate limit, compiled: where its key comes from, its bucket, its headers, its counters.

Keys (``RateLimit.key``):
- ``client_ip``: the address of the client connection;
- ``route``: one bucket for the whole route;
- ``header:NAME``: the first value of a request header;
- ``claim:NAME``: a claim of the route's verified JWT (lists joined with ",").
A request without the header or claim is counted under one shared empty key: leaving
the header out never escapes the limit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.config.schema import RateLimit
from proxy.errors import RateLimited
from proxy.policy import headers
from proxy.policy.jwt import Identity
from proxy.policy.ratelimit_local import LocalBuckets
from proxy.policy.ratelimit_shared import SharedBuckets

if TYPE_CHECKING:
    from proxy.http.request import RequestHead

KeyOf = Callable[["RequestHead", str, "Identity | None"], Any]

KEY_KINDS = ("client_ip", "route", "header:NAME", "claim:NAME")


def parse_key(key: str) -> tuple[str, str]:
    """("client_ip" | "route" | "header" | "claim", name or ""); ValueError when it is none of them."""
    if key in ("client_ip", "route"):
        return key, ""
    kind, sep, name = key.partition(":")
    if sep and kind in ("header", "claim") and name.strip() == name and name:
        return kind, name
    raise ValueError(f"{key!r} is not one of {', '.join(KEY_KINDS)}")


def key_function(key: str) -> KeyOf:
    kind, name = parse_key(key)
    if kind == "client_ip":
        return _client_ip
    if kind == "route":
        return _route
    if kind == "header":
        wanted = name.lower().encode("latin-1")

        def of_header(req: RequestHead, client_ip: str, identity: Identity | None) -> bytes:
            for found, value in req.headers:
                if found == wanted:
                    return value
            return b""

        return of_header

    def of_claim(req: RequestHead, client_ip: str, identity: Identity | None) -> str:
        if identity is None:
            return ""
        value = identity.route_claims.get(name, "")
        return ",".join(value) if isinstance(value, tuple) else value

    return of_claim


def _client_ip(req: RequestHead, client_ip: str, identity: Identity | None) -> str:
    return client_ip


def _route(req: RequestHead, client_ip: str, identity: Identity | None) -> str:
    return ""


def burst_of(spec: RateLimit) -> int:
    """The bucket size: ``burst``, or one period's worth of ``rate`` (at least 1)."""
    if spec.burst is not None:
        return spec.burst
    return max(1, math.ceil(spec.rate - 1e-9))


class LimitCounters:
    """Per limit, outliving reloads: requests allowed, limited, limited in shadow mode, and
    decided without Redis (fail_open or fail_closed)."""

    __slots__ = ("allowed", "limited", "shadow_limited", "unavailable")

    def __init__(self) -> None:
        self.allowed = 0
        self.limited = 0
        self.shadow_limited = 0  # would have been limited (shadow: true)
        self.unavailable = 0  # Redis did not answer

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class Limit:
    """A compiled ``RateLimit`` of one route."""

    __slots__ = (
        "name",
        "key_of",
        "rate",
        "burst",
        "shadow",
        "redis",
        "fail_closed",
        "buckets",
        "redis_prefix",
        "interval_us",
        "tolerance_us",
        "counters",
        "policy",
        "settings",
    )

    def __init__(
        self,
        spec: RateLimit,
        name: str,
        counters: LimitCounters,
        buckets: LocalBuckets | SharedBuckets | None,
        redis_prefix: bytes = b"",
    ) -> None:
        self.settings = spec
        self.name = name
        self.key_of = key_function(spec.key)
        self.rate = spec.rate / spec.per  # per second
        self.burst = burst_of(spec)
        self.shadow = spec.shadow
        self.redis = spec.backend == "redis"
        self.fail_closed = spec.on_redis_error == "fail_closed"
        self.buckets = buckets  # local backend only
        self.redis_prefix = redis_prefix  # redis backend: prefix + this limit's name + ":"
        self.interval_us = 1e6 / self.rate
        self.tolerance_us = self.burst * self.interval_us
        self.counters = counters
        self.policy = headers.ratelimit_policy([headers.policy_item(name, spec.rate, float(spec.per))])

    def __repr__(self) -> str:
        backend = ("redis" if self.redis else "local") + (" shadow" if self.shadow else "")
        return f"Limit({self.name}: {self.rate:g}/s burst {self.burst} {backend})"

    def refusal(self, wait: float) -> RateLimited:
        """The 429 for a request this limit refuses: wait ``wait`` seconds."""
        return RateLimited(self.name, headers.limited(self.policy, self.name, wait))

    def unavailable_refusal(self, retry: float) -> RateLimited:
        """The 429 of a fail_closed limit while Redis is down."""
        lines = headers.limited(self.policy, self.name, retry)
        return RateLimited(self.name + ": limiter unavailable", lines)


def redis_key(prefix: bytes, key: Any) -> bytes:
    """The Redis key of a bucket: prefix + the request's key (long keys are hashed)."""
    raw = key if isinstance(key, bytes) else key.encode("utf-8")
    if len(raw) > 200:
        raw = b"sha256:" + hashlib.sha256(raw).hexdigest().encode()
    return prefix + raw
