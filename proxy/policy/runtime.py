"""Policies of a config, compiled per route, and the state that outlives reloads.

``PolicyRuntime`` lives as long as a worker: the JWKS fetchers (``KeyRegistry``), the
Redis limiter, the local buckets and every counter. ``runtime.compile(config)`` builds
a ``PolicyTable`` (one ``RoutePolicy`` or None per route, indexed like the route
table's routes); a reload compiles a new table and keeps what did not change: the
buckets of a limit with the same route, name, rate and burst, the keys and cooldown of
a JWKS URL still in use, the Redis connection when ``redis`` is unchanged. After the
data plane has swapped tables, ``runtime.activate(table)`` (on the loop) starts the
JWKS fetchers the table needs and stops the ones it no longer does.

Local limits: ``LocalBuckets`` in a process of its own; ``SharedBuckets`` (one table per
limit in the directory the supervisor names in ``GRAYLANE_SHARED_DIR``) in a worker of a
multi-worker graylane, so that a local limit holds across the workers of one instance.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from proxy.config.schema import Config, RateLimit, RedisSettings, Route
from proxy.errors import ConfigError
from proxy.policy.fetch import fetch_url
from proxy.policy.jwt import AuthCounters, build_jwt_auth
from proxy.policy.keys import Fetch, KeyLoadError, KeyRegistry
from proxy.policy.limits import Limit, LimitCounters, burst_of
from proxy.policy.ratelimit_local import LocalBuckets
from proxy.policy.ratelimit_redis import RedisLimiter
from proxy.policy.ratelimit_shared import SHARED_DIR_ENV, SharedBuckets, SharedTableError
from proxy.policy.route_policy import RoutePolicy

MAX_KEYS_PER_LIMIT = 100_000  # local buckets kept per limit (bounded memory)

Buckets = LocalBuckets | SharedBuckets


class PolicyTable:
    """``routes[route_id]``: the RoutePolicy of that route, or None when it has none."""

    __slots__ = ("routes", "jwks_urls", "redis", "empty")

    def __init__(self, routes: list[RoutePolicy | None], jwks_urls: set[str], redis: RedisLimiter | None):
        self.routes = tuple(routes)
        self.jwks_urls = frozenset(jwks_urls)
        self.redis = redis
        # No route has a policy: read on every request, so computed once here.
        self.empty = all(policy is None for policy in self.routes)


class PolicyRuntime:
    def __init__(
        self, *, fetch: Fetch = fetch_url, redis_factory: Any = RedisLimiter, shared_dir: str | None = None
    ) -> None:
        """``shared_dir``: where the tables of local limits shared with other workers go; by
        default ``$GRAYLANE_SHARED_DIR`` (set by the supervisor), and none: buckets in this process."""
        self.shared_dir = shared_dir if shared_dir is not None else os.environ.get(SHARED_DIR_ENV) or None
        self.keys = KeyRegistry(fetch)
        self.auth_counters = AuthCounters()
        self.redis: RedisLimiter | None = None
        self._redis_factory = redis_factory
        self._retired: list[RedisLimiter] = []
        # (route name, limit name) -> (counters, buckets or None, (rate per s, burst))
        self._limits: dict[tuple[str, str], tuple[LimitCounters, Buckets | None, tuple]] = {}

    # --- compile ---------------------------------------------------------------------------

    def compile(self, config: Config) -> PolicyTable:
        """The policies of ``config``; ConfigError when a key file cannot be used."""
        problems: list[str] = []
        redis = self._redis_for(config)
        routes: list[RoutePolicy | None] = []
        urls: set[str] = set()
        for i, route in enumerate(config.routes):
            auth = None
            if route.auth is not None:
                spec = route.auth.jwt
                try:
                    auth = build_jwt_auth(spec, self.keys, self.auth_counters)
                except KeyLoadError as exc:
                    problems.append(f"routes[{i}].auth.jwt: {exc}")
                if spec.jwks_url is not None:
                    urls.add(spec.jwks_url)
            limits = []
            for j, spec in enumerate(route.rate_limits):
                try:
                    limits.append(self._limit(route, j, spec, redis))
                except SharedTableError as exc:
                    problems.append(f"routes[{i}].rate_limits[{j}]: {exc}")
            if any(limit.redis for limit in limits) and redis is None:
                problems.append(f"routes[{i}].rate_limits: backend redis needs the top-level redis section")
            routes.append(RoutePolicy(route.name, auth, limits, redis) if auth or limits else None)
        if problems:
            raise ConfigError(problems)
        return PolicyTable(routes, urls, redis)

    def _redis_for(self, config: Config) -> RedisLimiter | None:
        uses = any(limit.backend == "redis" for route in config.routes for limit in route.rate_limits)
        settings: RedisSettings | None = config.redis
        if not uses or settings is None:
            return None
        current = self.redis
        if current is not None and current.settings == settings:
            return current
        if current is not None:
            self._retired.append(current)
        self.redis = self._redis_factory(settings)
        return self.redis

    def _limit(self, route: Route, index: int, spec: RateLimit, redis: RedisLimiter | None) -> Limit:
        name = spec.name if spec.name is not None else f"{route.name}/{index}"
        shape = (spec.rate / spec.per, burst_of(spec), spec.backend)
        state = self._limits.get((route.name, name))
        if state is None or state[2] != shape:
            counters = state[0] if state is not None else LimitCounters()
            buckets = None
            if spec.backend == "local" and self.shared_dir is not None:
                # Named by route, limit and shape: every worker opens the same table.
                identity = [route.name, name]
                buckets = SharedBuckets(
                    shape[0], shape[1], MAX_KEYS_PER_LIMIT, directory=self.shared_dir, identity=identity
                )
            elif spec.backend == "local":
                buckets = LocalBuckets(shape[0], shape[1], MAX_KEYS_PER_LIMIT)
            state = self._limits[(route.name, name)] = (counters, buckets, shape)
        prefix = b""
        if redis is not None:
            prefix = redis.prefix + f"{route.name}:{name}:".encode()
        return Limit(spec, name, state[0], state[1], prefix)

    # --- lifecycle -----------------------------------------------------------------------------

    def activate(self, table: PolicyTable) -> None:
        """On the loop, once ``table`` is the one in use: start its JWKS fetchers, stop the others."""
        loop = asyncio.get_running_loop()
        for url in table.jwks_urls:
            self.keys.remotes[url].start()
        if len(self.keys.remotes) > len(table.jwks_urls):
            loop.create_task(self.keys.retain(table.jwks_urls))
        retired, self._retired = self._retired, []
        for limiter in retired:
            loop.create_task(limiter.close())

    async def close(self) -> None:
        await self.keys.close()
        for limiter in self._retired + ([self.redis] if self.redis is not None else []):
            await limiter.close()
        self._retired = []
        self.redis = None

    # --- counters ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every policy counter, for /metrics and /status."""
        auth = self.auth_counters
        out: dict[str, Any] = {
            "auth": {
                "verified": auth.verified,
                "cache_hits": auth.cache_hits,
                "failures": dict(auth.failures),
                "headers_dropped": auth.headers_dropped,
            },
            "jwks": {
                url: {
                    "keys": len(remote.keys),
                    "fetches": remote.fetches,
                    "failures": remote.failures,
                    "kid_fetches": remote.kid_fetches,
                    "kid_refused": remote.kid_refused,
                    "down": remote.down,
                }
                for url, remote in self.keys.remotes.items()
            },
            "rate_limits": [
                {"route": route, "limit": name, **state[0].as_dict()}
                for (route, name), state in self._limits.items()
            ],
        }
        redis = self.redis
        if redis is not None:
            out["redis"] = {
                "decisions": redis.decisions,
                "round_trips": redis.round_trips,
                "errors": redis.errors,
                "outages": redis.outages,
                "down": redis.down,
            }
        return out
