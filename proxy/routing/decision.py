"""What routing decided for one request, and the per-(route, version) part of it.

Everything that depends only on the route and the version (names, ids, header
plans, the endpoint group, where an empty version's share goes) is a ``Target``,
built once at config compile. A ``Decision`` is the small per-request object: the
target, the endpoint, the labels, the sticky hash and the mirror endpoint; its other
attributes read through to the target.
"""

from __future__ import annotations

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

    def __repr__(self) -> str:
        return f"Target({self.route_name} -> {self.group.service}/{self.version_name})"


class Decision:
    __slots__ = ("target", "endpoint", "labels", "sticky_hash", "mirror")

    def __init__(
        self,
        target: Target,
        endpoint: Endpoint,
        labels: dict[str, str] | None,
        sticky_hash: int,
        mirror: Endpoint | None,
    ) -> None:
        self.target = target
        self.endpoint = endpoint  # where to send the request
        self.labels = labels  # request-metadata labels (when the config matches on labels), else None
        self.sticky_hash = sticky_hash  # the 64-bit sticky hash used for the split, else -1
        self.mirror = mirror  # where to send a shadow copy, else None

    @property
    def route_name(self) -> str:
        return self.target.route_name

    @property
    def route_id(self) -> int:
        return self.target.route_id

    @property
    def version_name(self) -> str:
        return self.target.version_name

    @property
    def version_id(self) -> int:
        return self.target.version_id

    @property
    def request_plan(self) -> HeaderPlan:
        return self.target.request_plan

    @property
    def response_plan(self) -> HeaderPlan:
        return self.target.response_plan

    @property
    def mirror_version(self) -> str | None:
        mirror = self.mirror
        return None if mirror is None else mirror.version

    def __repr__(self) -> str:
        return (
            f"Decision(route={self.route_name!r}, version={self.version_name!r}, "
            f"endpoint={self.endpoint.address!r}, sticky_hash={self.sticky_hash}, mirror={self.mirror!r})"
        )
