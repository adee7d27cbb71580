"""The policies of one route, run by the data plane in a fixed order.

1. ``authenticate(req)``: the JWT (``Identity`` or None; raises ``Unauthorized``);
2. ``limit_local(req, client_ip, identity, now)``: every local limit (raises ``RateLimited``);
   ``admit`` is 1 and 2 together, both synchronous and cheap;
3. ``limit_redis(req, client_ip, identity, done)``: every Redis limit, answered later by
   ``done(None)`` (go on) or ``done(RateLimited)`` (answer it), on a later loop iteration.

Several limits: every one must admit the request. Local limits are taken all or none
(an allowed take is given back when a later local limit refuses); Redis limits are
decided independently, so a request refused by one still used the others' tokens.
A limit in shadow mode counts what it would have refused and refuses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.errors import RateLimited
from proxy.policy.jwt import Identity, JwtAuth
from proxy.policy.limits import Limit, redis_key
from proxy.policy.ratelimit_redis import ALLOWED, LIMITED, RedisLimiter

if TYPE_CHECKING:
    from proxy.http.request import RequestHead

Done = Callable[["RateLimited | None"], None]


class RoutePolicy:
    __slots__ = ("route_name", "auth", "local", "remote", "redis")

    def __init__(
        self,
        route_name: str,
        auth: JwtAuth | None,
        limits: list[Limit],
        redis: RedisLimiter | None,
    ) -> None:
        self.route_name = route_name
        self.auth = auth
        self.local = tuple(limit for limit in limits if not limit.redis)
        self.remote = tuple(limit for limit in limits if limit.redis)  # empty: no limit_redis needed
        self.redis = redis

    def __repr__(self) -> str:
        limits = self.local + self.remote
        return f"RoutePolicy({self.route_name}: auth={self.auth is not None}, limits={limits})"

    # --- synchronous phases ---------------------------------------------------------------

    def admit(self, req: RequestHead, client_ip: str, now: float, may_wait: bool = True) -> Identity | None:
        """Authentication, then the local limits. Raises Unauthorized (or KeysPending) / RateLimited."""
        auth = self.auth
        identity = None if auth is None else auth.verify(req, may_wait)
        if self.local:
            self.limit_local(req, client_ip, identity, now)
        return identity

    def authenticate(self, req: RequestHead, may_wait: bool = True) -> Identity | None:
        auth = self.auth
        return None if auth is None else auth.verify(req, may_wait)

    def limit_local(self, req: RequestHead, client_ip: str, identity: Identity | None, now: float) -> None:
        """Take a token from every local limit, or none; RateLimited when one refuses."""
        local = self.local
        if len(local) == 1:  # the common case, without the bookkeeping for giving tokens back
            limit = local[0]
            wait = limit.buckets.take(limit.key_of(req, client_ip, identity), now)
            if not wait:
                limit.counters.allowed += 1
            elif limit.shadow:
                limit.counters.shadow_limited += 1
            else:
                limit.counters.limited += 1
                raise limit.refusal(wait)
            return
        taken = []
        for limit in local:
            key = limit.key_of(req, client_ip, identity)
            wait = limit.buckets.take(key, now)
            if not wait:
                limit.counters.allowed += 1
                taken.append((limit, key))
            elif limit.shadow:
                limit.counters.shadow_limited += 1
            else:
                limit.counters.limited += 1
                for other, other_key in taken:
                    other.buckets.give_back(other_key)
                    other.counters.allowed -= 1
                raise limit.refusal(wait)

    # --- the asynchronous phase -----------------------------------------------------------

    def limit_redis(self, req: RequestHead, client_ip: str, identity: Identity | None, done: Done) -> None:
        """Ask Redis for every Redis limit; ``done(None | RateLimited)`` once all have answered."""
        remote = self.remote
        gather = _Gather(len(remote), done, self.redis.retry_interval)
        redis = self.redis
        for limit in remote:
            key = redis_key(limit.redis_prefix, limit.key_of(req, client_ip, identity))
            redis.check(key, limit.interval_us, limit.tolerance_us, 1, gather.callback(limit))


class _Gather:
    """Collects the answers of one request's Redis limits and calls ``done`` once."""

    __slots__ = ("left", "done", "error", "wait", "retry")

    def __init__(self, count: int, done: Done, retry: float) -> None:
        self.left = count
        self.done = done
        self.error: RateLimited | None = None
        self.wait = 0.0
        self.retry = retry

    def callback(self, limit: Limit) -> Callable[[int, float, int], None]:
        def on_result(status: int, wait: float, remaining: int) -> None:
            counters = limit.counters
            if status == ALLOWED:
                counters.allowed += 1
            elif status == LIMITED:
                if limit.shadow:
                    counters.shadow_limited += 1
                else:
                    counters.limited += 1
                    self._refuse(limit.refusal(wait), wait)
            else:
                counters.unavailable += 1
                if limit.fail_closed and not limit.shadow:
                    self._refuse(limit.unavailable_refusal(self.retry), self.retry)
            self.left -= 1
            if self.left == 0:
                self.done(self.error)

        return on_result

    def _refuse(self, error: RateLimited, wait: float) -> None:
        # The longest wait wins: that is when every limit admits the request again.
        if self.error is None or wait > self.wait:
            self.error = error
            self.wait = wait
