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
from proxy.routing.matchers import Check, HeaderCheck, header_checks
from proxy.routing.sticky import StickyKey

BUCKETS = 10_000  # the same as proxy._fast.routing's (a test checks)

_routing = load("routing")

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


# Both classes live in proxy._fast.routing (compiled: extension types the compiled decide reads).
VersionChoice = _routing.VersionChoice
MirrorChoice = _routing.MirrorChoice


def version_choice(
    targets: Sequence[Target],
    rules: Sequence[tuple[tuple[Check, ...], Target]],
    table: Sequence[int] | None,
    constant: Target | None,
    sticky: StickyKey | None,
    rand: Rand,
) -> VersionChoice:
    """The ``VersionChoice`` of one route, with its rules also in header-list form when every
    check of every rule reads request headers only (then no ``RequestView`` is needed)."""
    header_rules: list[tuple[tuple[HeaderCheck, ...], Target]] | None = []
    for checks, target in rules:
        on_headers = header_checks(checks)
        if on_headers is None:
            header_rules = None
            break
        header_rules.append((on_headers, target))
    return VersionChoice(targets, rules, header_rules, table, constant, sticky, rand)


def default_rand(seed: int | None) -> Rand:
    """``random.random`` (re-seeded by Python in each forked worker) or a seeded generator for tests."""
    return random.random if seed is None else random.Random(seed).random
