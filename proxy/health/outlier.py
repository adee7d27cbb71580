"""Passive outlier ejection: an endpoint that fails real requests N times in a row rests a while.

Theory of operation
-------------------
``record(endpoint, ok)`` runs once per finished upstream attempt, so its common case is
one dict membership test: only endpoints that are failing right now are in
``failing`` (endpoint object -> failures in a row), and a success removes them.

When an endpoint reaches ``consecutive_errors`` failures in a row (5xx answers or
failed connects: the caller decides what ``ok`` means) it is ejected for
``base_ejection_time x times it was ejected``, at most ``max_ejection_time`` (Envoy's
rule), unless that would put more than ``max_ejection_percent`` of its version's
endpoints out (at least one may always go when the percent is above 0, so a version
of one endpoint can still be ejected: its share then goes to the stable version).
The count of ejections is forgotten once an endpoint has stayed back for
``max_ejection_time``.

Ejections are kept by ``EndpointKey`` (service, version, address), not by endpoint
object, so they survive a new route table (reload, new rollout weights). ``sweep(now)``
brings back the endpoints whose time is up; ``next_expiry()`` says when to call it.
Every change is reported through ``on_change(key, ejected)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from proxy.config.schema import Outlier
from proxy.routing.endpoints import Endpoint

log = logging.getLogger("graylane")

EndpointKey = tuple[str, str, str]  # (service, version, address)
ChangeCallback = Callable[[EndpointKey, bool], None]


def endpoint_key(endpoint: Endpoint) -> EndpointKey:
    return (endpoint.service, endpoint.version, endpoint.address)


def max_ejected(endpoints: int, percent: float) -> int:
    """How many of ``endpoints`` may be ejected at once (at least one when percent > 0)."""
    if percent <= 0 or endpoints <= 0:
        return 0
    return max(1, math.floor(endpoints * percent / 100 + 1e-9))


class Ejection:
    __slots__ = ("since", "until", "times")

    def __init__(self, since: float, until: float, times: int) -> None:
        self.since = since
        self.until = until
        self.times = times  # the how-many-th ejection this is


class OutlierDetector:
    """See the module docstring."""

    def __init__(self, clock: Callable[[], float], on_change: ChangeCallback | None = None) -> None:
        self.clock = clock
        self.on_change = on_change
        self._settings: dict[str, Outlier] = {}  # service -> settings (services without: absent)
        self._members: dict[tuple[str, str], int] = {}  # (service, version) -> endpoint count
        # Endpoints with failures in a row, and how many; public so that the data plane can skip
        # calling record() for a success while it is empty (the usual case).
        self.failing: dict[Endpoint, int] = {}
        self.ejected: dict[EndpointKey, Ejection] = {}
        self._times: dict[EndpointKey, int] = {}  # ejections so far
        self._back_at: dict[EndpointKey, float] = {}  # when an ejected endpoint came back
        self.ejections = 0  # counted for metrics
        self.skipped = 0  # ejections refused by max_ejection_percent

    def configure(self, settings: Mapping[str, Outlier], endpoints: Iterable[EndpointKey]) -> None:
        """Settings per service, and every endpoint of the new route table.

        Ejections of endpoints that are gone, or of services that no longer want outlier
        detection, end at once.
        """
        self._settings = dict(settings)
        known = set(endpoints)
        self._members = {}
        for key in known:
            self._members[key[:2]] = self._members.get(key[:2], 0) + 1
        self.failing.clear()
        for key in [k for k in self.ejected if k[0] not in self._settings or k not in known]:
            self._restore(key, self.clock())

    # --- hot path ------------------------------------------------------------------------

    def record(self, endpoint: Endpoint, ok: bool) -> None:
        """One finished attempt at ``endpoint``: ok, or a 5xx / connect failure."""
        if ok:
            failing = self.failing
            if failing and endpoint in failing:  # usually empty: skip hashing the endpoint
                del failing[endpoint]
            return
        self._failed(endpoint)

    # --- the rest ------------------------------------------------------------------------

    def _failed(self, endpoint: Endpoint) -> None:
        settings = self._settings.get(endpoint.service)
        if settings is None:
            return
        count = self.failing.get(endpoint, 0) + 1
        if count < settings.consecutive_errors:
            self.failing[endpoint] = count
            return
        self.failing.pop(endpoint, None)
        self._eject(endpoint_key(endpoint), settings)

    def _eject(self, key: EndpointKey, settings: Outlier) -> None:
        if key in self.ejected:
            return  # a late answer from before the ejection
        group = key[:2]
        out = sum(1 for other in self.ejected if other[:2] == group)
        if out >= max_ejected(self._members.get(group, 0), settings.max_ejection_percent):
            self.skipped += 1
            return
        now = self.clock()
        back = self._back_at.get(key)
        if back is not None and now - back >= settings.max_ejection_time:
            self._times.pop(key, None)  # it behaved long enough: start counting again
        times = self._times.get(key, 0) + 1
        self._times[key] = times
        rest = min(settings.base_ejection_time * times, settings.max_ejection_time)
        self.ejected[key] = Ejection(now, now + rest, times)
        self.ejections += 1
        log.warning(
            "%s/%s endpoint %s ejected for %gs after %d failures in a row (ejection %d)",
            *key,
            rest,
            settings.consecutive_errors,
            times,
        )
        if self.on_change is not None:
            self.on_change(key, True)

    def sweep(self, now: float) -> list[EndpointKey]:
        """Bring back the endpoints whose ejection is over; returns them."""
        due = [key for key, ejection in self.ejected.items() if ejection.until <= now]
        for key in due:
            self._restore(key, now)
        return due

    def _restore(self, key: EndpointKey, now: float) -> None:
        del self.ejected[key]
        self._back_at[key] = now
        log.info("%s/%s endpoint %s is back from ejection", *key)
        if self.on_change is not None:
            self.on_change(key, False)

    def next_expiry(self) -> float | None:
        return min((e.until for e in self.ejected.values()), default=None)

    def is_ejected(self, key: EndpointKey) -> bool:
        return key in self.ejected

    def describe(self, key: EndpointKey, now: float) -> dict[str, Any] | None:
        ejection = self.ejected.get(key)
        if ejection is None:
            return None
        return {"for_seconds": max(0.0, ejection.until - now), "times": ejection.times}
