"""Rate limits in a real Redis: the script, batching, accuracy across two limiters, outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import msgspec
import pytest
from policy_support import RedisServer, head, make_config

from proxy.config.schema import RedisSettings
from proxy.config.units import dec_hook
from proxy.errors import RateLimited
from proxy.policy import PolicyRuntime
from proxy.policy.ratelimit_redis import ALLOWED, LIMITED, UNAVAILABLE, RedisLimiter

pytestmark = pytest.mark.integration

RATE, BURST = 100, 20
INTERVAL_US = 1e6 / RATE
TOLERANCE_US = BURST * INTERVAL_US


def settings(server: RedisServer, **fields: Any) -> RedisSettings:
    doc = {"url": server.url, "retry_interval": "200ms", **fields}
    return msgspec.convert(doc, RedisSettings, strict=False, dec_hook=dec_hook)


async def decide(limiter: RedisLimiter, count: int, key: bytes = b"t:k") -> list[tuple[int, float, int]]:
    """``count`` decisions asked in one loop iteration, in the order they were answered."""
    results: list[tuple[int, float, int]] = []
    answered = asyncio.Event()

    def on_result(status: int, wait: float, remaining: int) -> None:
        results.append((status, wait, remaining))
        if len(results) == count:
            answered.set()

    for _ in range(count):
        limiter.check(key, INTERVAL_US, TOLERANCE_US, 1, on_result)
    assert results == []  # never answered inside check()
    await asyncio.wait_for(answered.wait(), 10)
    return results


def test_a_burst_passes_then_requests_are_limited(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        limiter = RedisLimiter(settings(redis_server))
        results = await decide(limiter, 25)
        assert [status for status, _, _ in results] == [ALLOWED] * 20 + [LIMITED] * 5
        assert [remaining for _, _, remaining in results[:20]] == list(range(19, -1, -1))
        assert all(0 < wait <= 0.06 for _, wait, _ in results[20:])
        assert (limiter.round_trips, limiter.decisions, limiter.script_loads) == (1, 25, 1)
        other = await decide(limiter, 1, key=b"t:other")
        assert other[0][0] == ALLOWED
        await limiter.close()

    asyncio.run(scenario())


def test_one_round_trip_per_loop_iteration(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        limiter = RedisLimiter(settings(redis_server))
        answered: list[int] = []
        done = asyncio.Event()

        def on_result(status: int, wait: float, remaining: int) -> None:
            answered.append(status)
            if len(answered) == 300:
                done.set()

        for _ in range(3):  # three iterations of 100 checks each
            for i in range(100):
                limiter.check(b"t:%d" % i, INTERVAL_US, TOLERANCE_US, 1, on_result)
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 10)
        assert limiter.round_trips == 3
        assert Counter(answered) == {ALLOWED: 300}
        await limiter.close()

    asyncio.run(scenario())


def test_two_limiters_sharing_redis_accept_burst_plus_rate_times_duration(redis_server: RedisServer) -> None:
    """100/s with a burst of 20, asked as fast as Redis answers for 5 s by two limiters: 520 +- 5%.

    Each limiter asks a round of 50 decisions as soon as its previous round is answered, so
    no queue builds up and every decision is taken within a round trip of being asked.
    """

    async def drive(limiter: RedisLimiter, deadline: float, tally: Counter[int]) -> None:
        while time.monotonic() < deadline:  # bounded by the clock
            for status, _, _ in await decide(limiter, 50, key=b"t:accuracy"):
                tally[status] += 1

    async def scenario() -> Counter[int]:
        limiters = [RedisLimiter(settings(redis_server)), RedisLimiter(settings(redis_server))]
        tally: Counter[int] = Counter()
        deadline = time.monotonic() + 5.0
        await asyncio.gather(*(drive(limiter, deadline, tally) for limiter in limiters))
        for limiter in limiters:
            await limiter.close()
        return tally

    tally = asyncio.run(scenario())
    assert tally[UNAVAILABLE] == 0
    assert sum(tally.values()) > 2000, f"not heavy load: {tally}"
    assert 494 <= tally[ALLOWED] <= 546, tally


def test_an_outage_fails_open_is_logged_once_and_ends_by_itself(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        limiter = RedisLimiter(settings(redis_server))
        assert [s for s, _, _ in await decide(limiter, 21)].count(LIMITED) == 1
        redis_server.kill()
        with caplog.at_level(logging.INFO, logger="graylane"):
            for _ in range(5):
                assert {s for s, _, _ in await decide(limiter, 10)} == {UNAVAILABLE}
            assert limiter.down and limiter.outages == 1
            trips = limiter.round_trips
            for _ in range(20):  # within retry_interval: answered at once, no new round trip
                assert {s for s, _, _ in await decide(limiter, 1)} == {UNAVAILABLE}
            assert limiter.round_trips - trips <= 1
            redis_server.start()
            deadline = time.monotonic() + 10
            while True:  # the next probe after retry_interval finds Redis back
                statuses = [s for s, _, _ in await decide(limiter, 1)]
                if statuses != [UNAVAILABLE] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert statuses == [ALLOWED] and not limiter.down
            # The restarted Redis had no script and no buckets: reloaded, and limiting again.
            assert limiter.script_loads == 2
            assert [s for s, _, _ in await decide(limiter, 25)].count(LIMITED) >= 4
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable" in warnings[0]
        assert any("is back after" in r.getMessage() for r in caplog.records)
        await limiter.close()

    asyncio.run(scenario())


def test_route_policies_with_redis_limits(redis_server: RedisServer) -> None:
    config = make_config(
        [
            {
                "name": "api",
                "service": "shop",
                "rate_limits": [
                    {"rate": 100, "burst": 2, "backend": "redis", "name": "global"},
                    {"rate": 100, "burst": 1, "backend": "redis", "name": "shadow", "shadow": True},
                ],
            },
            {
                "name": "strict",
                "service": "shop",
                "rate_limits": [{"rate": 100, "backend": "redis", "on_redis_error": "fail_closed"}],
            },
        ],
        redis={"url": redis_server.url, "retry_interval": "200ms"},
    )

    async def scenario() -> None:
        runtime = PolicyRuntime()
        table = runtime.compile(config)
        api, strict = table.routes
        assert api.local == () and len(api.remote) == 2

        async def admit(policy: Any) -> RateLimited | None:
            answer: asyncio.Future = asyncio.get_running_loop().create_future()
            policy.limit_redis(head(), "10.0.0.1", None, answer.set_result)
            return await asyncio.wait_for(answer, 10)

        assert await admit(api) is None
        assert await admit(api) is None  # the shadow limit would refuse this one
        refused = await admit(api)
        assert isinstance(refused, RateLimited) and refused.reason == "global"
        assert b'RateLimit-Policy: "global";q=100;w=1\r\n' in refused.headers
        shadow = api.remote[1].counters
        assert (shadow.allowed, shadow.shadow_limited, shadow.limited) == (1, 2, 0)
        redis_server.kill()
        assert await admit(api) is None  # fail_open
        closed = await admit(strict)
        assert isinstance(closed, RateLimited) and closed.reason.endswith("limiter unavailable")
        assert closed.headers.startswith(b"Retry-After: 1\r\n")
        snapshot = runtime.snapshot()
        assert snapshot["redis"]["outages"] == 1 and snapshot["redis"]["down"] is True
        await runtime.close()

    asyncio.run(scenario())


def test_a_new_redis_section_replaces_the_limiter_on_reload(redis_server: RedisServer) -> None:
    def config(timeout: str) -> Any:
        route = {"name": "api", "service": "shop", "rate_limits": [{"rate": 10, "backend": "redis"}]}
        return make_config([route], redis={"url": redis_server.url, "timeout": timeout})

    async def scenario() -> None:
        runtime = PolicyRuntime()
        first = runtime.compile(config("250ms"))
        runtime.activate(first)
        assert runtime.compile(config("250ms")).redis is first.redis
        second = runtime.compile(config("300ms"))
        assert second.redis is not first.redis
        runtime.activate(second)  # closes the old limiter in the background
        await runtime.close()

    asyncio.run(scenario())


def test_closing_answers_what_is_still_queued(redis_server: RedisServer) -> None:
    async def scenario() -> list[int]:
        limiter = RedisLimiter(settings(redis_server))
        statuses: list[int] = []
        limiter.check(b"t:k", INTERVAL_US, TOLERANCE_US, 1, lambda s, w, r: statuses.append(s))
        await limiter.close()
        return statuses

    assert asyncio.run(scenario()) == [UNAVAILABLE]
