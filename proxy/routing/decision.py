"""What routing decided for one request, and the per-(route, version) part of it.

Everything that depends only on the route and the version (names, ids, header
plans, the endpoint group, where an empty version's share goes) is a ``Target``,
built once at config compile. A ``Decision`` is the small per-request object: the
target, the endpoint, the labels, the sticky hash and the mirror endpoint; its names,
ids and header plans are the target's.

Both classes live in ``proxy._fast.routing`` (compiled: extension types with C fields, read by
the compiled ``decide``); this module keeps their import path.
"""

from __future__ import annotations

from proxy._fast import load

_routing = load("routing")

Target = _routing.Target
Decision = _routing.Decision

__all__ = ["Decision", "Target"]
