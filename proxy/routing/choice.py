"""Version choice for one route: content rules, then the weighted split (sticky or not).

Theory of operation
-------------------
The split is a table of ``BUCKETS`` (10,000) entries, each naming a version; a request
reads one entry. A sticky request reads entry ``stable_hash(salt, key) % BUCKETS``, so
the same key always reads the same entry; any other request reads a random entry
(``int(random() * BUCKETS)``: one C call, no ``random.choices`` per request).

Buckets are handed out in one pass over the versions, non-stable versions first in
the order of the ``split`` list and the stable version last; each takes the run of
buckets up to ``BUCKETS * (cumulative weight) // total``. With two versions the canary
owns ``[0, c)`` and stable ``[c, 10000)``: raising the canary's weight only grows
``c``, so users only move from stable to the canary, never back (and lowering it only
moves them back to stable). With N versions, raising the weight of one version
(others unchanged) only grows that version's run at both ends, so nobody leaves it;
the runs of the versions before it shrink from their end and those after it shrink
from their start, so some users of another non-stable version can move to a
neighbouring version. Moving weight from stable to the *last* non-stable version
moves users only from stable to it. Weights are relative integers; zero is allowed;
the resolution is 1/10,000 (a share below 0.01% may get no bucket).

Content rules are tried before the split, in order; the first that matches names the
version and the split is not consulted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from proxy._fast import load
from proxy.routing.decision import Target
from proxy.routing.endpoints import Endpoint, EndpointGroup
from proxy.routing.matchers import Check, HeaderCheck, header_checks, matches
from proxy.routing.sticky import StickyKey
from proxy.routing.view import RequestView

BUCKETS = 10_000

_first_value = load("matching").first_value

Rand = Callable[[], float]  # uniform in [0, 1), e.g. random.random


def bucket_table(split: Sequence[tuple[int, int]], stable: int) -> Sequence[int]:
    """``BUCKETS`` entries of version slots for ``split`` [(slot, weight), ...] in config order.

    ``stable`` is the stable version's slot; it takes the last run (its weight is 0
    when it is not in ``split``). The total weight must be > 0.
    """
    order = [(slot, weight) for slot, weight in split if slot != stable]
    order.append((stable, sum(weight for slot, weight in split if slot == stable)))
    total = sum(weight for _, weight in order)
    if total <= 0:
        raise ValueError("the split weights are all zero")
    table: list[int] = []
    cumulative = 0
    for slot, weight in order:
        cumulative += weight
        table.extend([slot] * (cumulative * BUCKETS // total - len(table)))
    # Slots fit in a byte for any real service: bytes indexing is fast and compact.
    return bytes(table) if max(table) < 256 else tuple(table)


class VersionChoice:
    """``choose(view)`` -> (Target, sticky_hash or -1) for one route.

    When every content rule reads request headers only and the sticky key, if any, is a
    header (the usual canary: a user header and a split sticky on it), ``needs_view`` is
    False and ``choose_headers(req.headers)`` gives the same answer without a ``RequestView``.
    """

    __slots__ = (
        "rules", "targets", "table", "constant", "sticky", "rand", "needs_view", "header_rules", "fixed",
    )  # fmt: skip

    def __init__(
        self,
        targets: Sequence[Target],
        rules: Sequence[tuple[tuple[Check, ...], Target]],
        table: Sequence[int] | None,
        constant: Target | None,
        sticky: StickyKey | None,
        rand: Rand,
    ) -> None:
        self.targets = tuple(targets)  # by slot (the service's version order)
        self.rules = tuple(rules)  # (checks, target) in order
        self.table = table  # None when one version takes every bucket
        self.constant = constant  # that version, when table is None
        self.sticky = sticky if table is not None else None  # one version: no key to hash
        self.rand = rand
        # The rules in header-list form, or None when some check needs more than the headers.
        header_rules: tuple[tuple[tuple[HeaderCheck, ...], Target], ...] | None = ()
        for checks, target in self.rules:
            on_headers = header_checks(checks)
            if on_headers is None:
                header_rules = None
                break
            header_rules += ((on_headers, target),)
        self.header_rules = header_rules
        self.needs_view = header_rules is None or (self.sticky is not None and self.sticky.header is None)
        # One version and no rule: the answer needs nothing from the request.
        self.fixed = constant if table is None and not self.rules else None

    def choose(self, view: RequestView | None) -> tuple[Target, int]:
        for checks, target in self.rules:
            if matches(checks, view):
                return target, -1
        sticky = self.sticky
        return self._split(sticky.fetch(view) if sticky is not None else None)

    def choose_headers(self, headers: list) -> tuple[Target, int]:
        """``choose`` on the request's header list; only when ``needs_view`` is False."""
        for checks, target in self.header_rules:
            for check in checks:  # matches(), inlined
                if not check(headers):
                    break
            else:
                return target, -1
        sticky = self.sticky
        return self._split(_first_value(headers, sticky.header) if sticky is not None else None)

    def _split(self, key: bytes | None) -> tuple[Target, int]:
        """The split's version: by the sticky ``key`` when there is one, else at random."""
        table = self.table
        if table is None:
            return self.constant, -1
        if key:
            sticky = self.sticky
            h = sticky.hash_key(sticky.state, key)
            return self.targets[table[h % BUCKETS]], h
        return self.targets[table[int(self.rand() * BUCKETS)]], -1


class MirrorChoice:
    """Which requests of a route get a shadow copy, and where it goes."""

    __slots__ = ("group", "probability", "max_pending", "rand")

    def __init__(self, group: EndpointGroup, percent: float, max_pending: int, rand: Rand) -> None:
        self.group = group
        self.probability = percent / 100.0
        self.max_pending = max_pending  # for the data plane: shadow requests in flight at most
        self.rand = rand

    def pick(self, version_id: int) -> Endpoint | None:
        """A mirror endpoint for a request sent to ``version_id``, or None.

        A request already going to the mirror version is not copied to it again.
        """
        group = self.group
        if version_id == group.version_id:
            return None
        probability = self.probability
        if probability < 1.0 and not self.rand() < probability:
            return None
        pick = group.next
        return None if pick is None else pick()


def default_rand(seed: int | None) -> Rand:
    """``random.random`` (re-seeded by Python in each forked worker) or a seeded generator for tests."""
    return random.random if seed is None else random.Random(seed).random
