"""Token buckets in this process: one ``LocalBuckets`` per limit, one float per key.

Theory of operation
-------------------
A token bucket of ``burst`` tokens refilled at ``rate`` per second is kept as GCRA
(the generic cell rate algorithm): per key only the "theoretical arrival time" (TAT),
the time at which the bucket would be full again. A request costing ``cost`` tokens
moves it ``cost * interval`` later (``interval = 1 / rate``) and is allowed when the
new TAT is at most ``burst * interval`` ahead of now. So ``burst`` requests pass at
once, then one per ``interval``: over T seconds at most ``burst + rate * T``.

Idle keys expire without a timer or a scan: keys live in two dicts, ``new`` and
``old``; every ``period`` (at least the time a bucket takes to refill from empty) ``old``
is dropped and ``new`` becomes ``old``. A key read from ``old`` moves to ``new``. A key
untouched for a whole period has a TAT in the past -- a full bucket, the same as no
entry -- so dropping it changes nothing. Past ``max_keys`` keys the rotation happens
early: memory stays bounded, at the price of forgetting (counted in ``evictions``).

Workers: with ``workers: N`` the buckets must hold across the processes, whichever
worker the kernel gave a connection to (SO_REUSEPORT): there each worker uses
``SharedBuckets`` (``proxy.policy.ratelimit_shared``), the same GCRA on a table in shared
memory, and ``LocalBuckets`` serves a graylane of one process (no lock, no file). Use
``backend: redis`` when the limit must hold across replicas (several graylane instances).

``now`` is any monotonic clock in seconds (the data plane passes ``perf_counter()``).
"""

from __future__ import annotations

import math

_EPSILON = 1e-9  # float sums of intervals must not refuse the last token of a burst


class BucketShape:
    """What every GCRA bucket table keeps of its limit: the interval, the tolerance, the bound.

    ``LocalBuckets`` and ``SharedBuckets`` (ratelimit_shared) differ only in where TATs live.
    """

    __slots__ = ("interval", "tolerance", "burst", "max_keys", "evictions", "_limit")

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        """``rate`` tokens per second, ``burst`` tokens at most (>= 1)."""
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_keys >= 1")
        self.interval = 1.0 / rate
        self.tolerance = burst * self.interval
        self.burst = burst
        self.max_keys = max_keys
        self.evictions = 0  # keys forgotten before they were idle (the table was full)
        self._limit = self.tolerance + _EPSILON * self.interval

    def _tokens_left(self, tat: float, now: float) -> int:
        """Whole tokens in a bucket whose theoretical arrival time is ``tat``."""
        ahead = max(tat - now, 0.0)
        return max(0, math.floor((self.tolerance - ahead) / self.interval + _EPSILON))


class LocalBuckets(BucketShape):
    __slots__ = ("_new", "_old", "_period", "_rotate_at")

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        """``rate`` tokens per second, ``burst`` tokens at most (>= 1)."""
        super().__init__(rate, burst, max_keys)
        self._new: dict = {}
        self._old: dict = {}
        self._period = max(self.tolerance, 1.0)
        self._rotate_at = -math.inf

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def take(self, key: object, now: float, cost: int = 1) -> float:
        """0.0 when allowed (the tokens are taken); else the seconds until it would be allowed."""
        if now >= self._rotate_at:
            self._rotate(now)
        new = self._new
        tat = new.get(key)
        if tat is None:
            tat = self._old.pop(key, now)
        if tat < now:
            tat = now
        after = tat + cost * self.interval
        if after - now > self._limit:
            new[key] = tat  # unchanged (and moved out of old)
            return after - now - self.tolerance
        new[key] = after
        if len(new) > self.max_keys:
            self.evictions += len(self._old)
            self._rotate(now)
        return 0.0

    def give_back(self, key: object, cost: int = 1) -> None:
        """Undo a ``take`` that was allowed (another limit of the same request refused it)."""
        tat = self._new.get(key)
        if tat is not None:
            self._new[key] = tat - cost * self.interval

    def remaining(self, key: object, now: float) -> int:
        """Whole tokens in the key's bucket now."""
        tat = self._new.get(key)
        if tat is None:
            tat = self._old.get(key, now)
        return self._tokens_left(tat, now)

    def _rotate(self, now: float) -> None:
        self._old = self._new
        self._new = {}
        self._rotate_at = now + self._period
