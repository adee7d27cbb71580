"""Rate-limit decisions in Redis, shared by every graylane process that uses the same Redis.

Theory of operation
-------------------
One decision is one call of ``SCRIPT`` (GCRA, the same algorithm as
``ratelimit_local``, on Redis's own clock so that processes on different hosts agree):
atomic, one key per bucket, expiring by itself when the bucket is full again.

``check(key, interval_us, tolerance_us, cost, on_result)`` only queues the decision.
The first check of a loop iteration schedules a flush for the next one (``call_soon``),
so every decision asked during one iteration travels in one pipeline: one round trip
per iteration, not per request. Up to ``max_connections`` pipelines are in flight at
once; beyond that, decisions wait for the next free one (and so form bigger batches).
``on_result(status, wait, remaining)`` is always called later, on the loop, never
inside ``check``: ``status`` is ``ALLOWED``, ``LIMITED`` (``wait`` = seconds until it
would pass) or ``UNAVAILABLE`` (Redis did not answer: the caller applies its
fail_open / fail_closed).

Outages: a failed round trip marks Redis down; the first failure of an outage is
logged (and counted in ``outages``), the rest only counted. While down, decisions are
answered ``UNAVAILABLE`` at once, except that every ``retry_interval`` one batch is
sent as a probe; its success ends the outage (logged once more). Pipelines already in
flight when the state changed (``epoch``) change nothing: a late answer from before the
outage does not end it, a late failure from before the recovery does not start another. redis-py reconnects
its pooled connections by itself; its own retries are off, so a dead Redis costs one
failed attempt per probe, not several per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from proxy.config.schema import RedisSettings

log = logging.getLogger("graylane")

ALLOWED, LIMITED, UNAVAILABLE = 1, 0, -1

OnResult = Callable[[int, float, int], None]

# KEYS[1]: the bucket. ARGV: emission interval (us), burst tolerance (us), cost (tokens).
# Returns {allowed (1/0), wait in us (0 when allowed), remaining tokens}.
SCRIPT = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = tonumber(stored)
  if tat < now then tat = now end
end
local after = tat + cost * interval
local ahead = after - now
if ahead > tolerance + 1 then
  return {0, math.ceil(ahead - tolerance), 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil(ahead / 1000) + 1)
return {1, 0, math.floor((tolerance - ahead) / interval + 0.000001)}
"""

_FAILURES = (RedisError, OSError, TimeoutError)


class RedisLimiter:
    """Batched GCRA decisions against one Redis (see the module's docstring)."""

    def __init__(
        self,
        settings: RedisSettings,
        *,
        client: aioredis.Redis | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.settings = settings
        self.url = settings.url
        self.timeout = float(settings.timeout)
        self.retry_interval = float(settings.retry_interval)
        self.max_in_flight = max(1, settings.max_connections)
        self.prefix = settings.key_prefix.encode("utf-8")
        if client is None:
            client = aioredis.Redis.from_url(
                settings.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=float(settings.connect_timeout),
                max_connections=self.max_in_flight + 1,  # + 1 for a script load
                retry=Retry(NoBackoff(), 0),
                retry_on_error=[],
                retry_on_timeout=False,
                health_check_interval=0,
            )
        self.client = client
        self._loop = loop
        self._queue: list[tuple[bytes, float, float, int, OnResult]] = []
        self._scheduled = False
        self._in_flight = 0
        self._sha: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._down_since = 0.0
        self._retry_at = 0.0
        self._epoch = 0  # changes when Redis goes down or comes back
        self.down = False
        # counters
        self.decisions = 0  # decisions asked for
        self.round_trips = 0  # pipelines sent
        self.errors = 0  # decisions answered UNAVAILABLE
        self.outages = 0  # times Redis went down
        self.script_loads = 0

    # --- the data plane's side -------------------------------------------------------

    def check(
        self, key: bytes, interval_us: float, tolerance_us: float, cost: int, on_result: OnResult
    ) -> None:
        """Queue one decision; ``on_result(status, wait, remaining)`` is called on a later iteration."""
        self.decisions += 1
        self._queue.append((key, interval_us, tolerance_us, cost, on_result))
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        if self.down and (self._in_flight or self._loop.time() < self._retry_at):
            batch = self._queue
            self._queue = []
            self._answer_unavailable(batch)
            return
        if self._in_flight >= self.max_in_flight:
            return  # sent when a pipeline comes back
        batch = self._queue
        self._queue = []
        self._in_flight += 1
        task = self._loop.create_task(self._send(batch, self._epoch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list, epoch: int) -> None:
        try:
            try:
                async with asyncio.timeout(self.timeout * 2 + self.settings.connect_timeout):
                    results = await self._round_trip(batch)
            except _FAILURES as exc:
                if epoch == self._epoch:
                    self._went_down(exc)
                self._answer_unavailable(batch)
                return
            if epoch == self._epoch:
                self._came_back()
            for (_, _, _, _, on_result), result in zip(batch, results, strict=True):
                if isinstance(result, list | tuple):
                    status, wait_us, remaining = result
                    _call(on_result, ALLOWED if status == 1 else LIMITED, wait_us / 1e6, remaining)
                else:  # this one decision failed (a Redis error reply)
                    self.errors += 1
                    _call(on_result, UNAVAILABLE, 0.0, 0)
        finally:
            self._in_flight -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush)

    async def _round_trip(self, batch: list) -> list:
        self.round_trips += 1
        if self._sha is None:
            await self._load_script()
        results = await self._pipeline(batch)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:  # Redis restarted (or SCRIPT FLUSH): load the script and ask those again
            await self._load_script()
            again = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list) -> list:
        pipe = self.client.pipeline(transaction=False)
        sha = self._sha
        for key, interval_us, tolerance_us, cost, _ in batch:
            pipe.execute_command("EVALSHA", sha, 1, key, interval_us, tolerance_us, cost)
        return await pipe.execute(raise_on_error=False)

    async def _load_script(self) -> None:
        self.script_loads += 1
        sha = await self.client.script_load(SCRIPT)
        self._sha = sha.decode() if isinstance(sha, bytes) else sha

    def _answer_unavailable(self, batch: list) -> None:
        self.errors += len(batch)
        for _, _, _, _, on_result in batch:
            _call(on_result, UNAVAILABLE, 0.0, 0)

    # --- outages ----------------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        now = self._loop.time()
        self._retry_at = now + self.retry_interval
        if not self.down:
            self.down = True
            self._epoch += 1
            self._down_since = now
            self.outages += 1
            # Idle pooled connections may be dead too: drop them, the probes connect afresh.
            task = self._loop.create_task(self._drop_idle_connections())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            log.warning(
                "redis %s unavailable (%s): redis rate limits fail open or closed (as configured) "
                "until it is back",
                _safe_url(self.url),
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )

    async def _drop_idle_connections(self) -> None:
        try:
            await self.client.connection_pool.disconnect(inuse_connections=False)
        except _FAILURES:
            pass

    def _came_back(self) -> None:
        if self.down:
            self.down = False
            self._epoch += 1
            log.info(
                "redis %s is back after %.1fs (%d decisions answered without it)",
                _safe_url(self.url),
                self._loop.time() - self._down_since,
                self.errors,
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._answer_unavailable(self._queue)
        self._queue = []
        await self.client.aclose()


def _call(on_result: OnResult, status: int, wait: float, remaining: int) -> None:
    try:
        on_result(status, wait, remaining)
    except Exception:
        log.exception("rate limit callback failed")


def _safe_url(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest
