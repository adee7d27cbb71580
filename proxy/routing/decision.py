"""What routing decided for one request, and the per-(route, version) part of it.

Everything that depends only on the route and the version (names, ids, header
plans, the endpoint group, where an empty version's share goes) is a ``Target``,
built once at config compile. A ``Decision`` is the small per-request object: the
target, the endpoint, the labels, the sticky hash and the mirror endpoint, plus copies of
the target's names, ids and header plans (plain fields: the data plane reads several of
them per request).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import msgspec

from proxy.routing.endpoints import Endpoint, EndpointGroup
from proxy.routing.plans import HeaderPlan


class Target:
    """One version of the service of one route, with everything precomputed."""

    __slots__ = (
        "route_name",
        "route_id",
        "version_name",
        "version_id",
        "group",
        "request_plan",
        "response_plan",
        "fallback",
        "stats_slot",
        "new_decision",
    )

    def __init__(
        self,
        route_name: str,
        route_id: int,
        group: EndpointGroup,
        request_plan: HeaderPlan,
        response_plan: HeaderPlan,
    ) -> None:
        self.route_name = route_name
        self.route_id = route_id  # index in RouteTable.route_names
        self.version_name = group.version
        self.version_id = group.version_id  # index in RouteTable.versions
        self.group = group
        self.request_plan = request_plan
        self.response_plan = response_plan
        # Where this version's share goes when it has no endpoint: the route's target for the
        # stable version, or None (answer 503) for the stable version itself or on_empty_version "503".
        self.fallback: Target | None = None
        # Index of this (route, version) in the request counters; they outlive reloads,
        # so the server assigns it by name after compiling (proxy.observe.counters).
        self.stats_slot = 0
        # (endpoint, labels, sticky_hash, mirror) -> Decision: a C-level partial of the Struct
        # with this target's fields already bound (one call per request, no Python __init__).
        self.new_decision: Callable[[Endpoint, dict | None, int, Endpoint | None], Decision] = partial(
            Decision,
            self,
            route_name,
            route_id,
            self.version_name,
            self.version_id,
            request_plan,
            response_plan,
        )

    def __repr__(self) -> str:
        return f"Target({self.route_name} -> {self.group.service}/{self.version_name})"


class Decision(msgspec.Struct, gc=False, eq=False):
    """The per-request part: ``target.new_decision(endpoint, labels, sticky_hash, mirror)`` makes one.

    The fields that only depend on the target are copies of its values, bound once into
    ``Target.new_decision``: the data plane reads them as plain fields, not through properties.
    ``eq=False`` keeps identity comparison and hashing; ``gc=False`` because a decision
    never takes part in a reference cycle (it refers to config objects and a labels dict).
    """

    target: Target
    route_name: str
    route_id: int
    version_name: str
    version_id: int
    request_plan: HeaderPlan
    response_plan: HeaderPlan
    endpoint: Endpoint  # where to send the request (the data plane may move a retry to another)
    labels: dict[str, str] | None  # request-metadata labels (when the config matches on labels), else None
    sticky_hash: int  # the 64-bit sticky hash used for the split, else -1
    mirror: Endpoint | None  # where to send a shadow copy, else None

    @property
    def mirror_version(self) -> str | None:
        mirror = self.mirror
        return None if mirror is None else mirror.version

    def __repr__(self) -> str:
        return (
            f"Decision(route={self.route_name!r}, version={self.version_name!r}, "
            f"endpoint={self.endpoint.address!r}, sticky_hash={self.sticky_hash}, mirror={self.mirror!r})"
        )
