# cython: annotation_typing=False
"""The per-request half of routing: the objects ``RouteTable.decide`` reads and the decide itself.

Theory of operation
-------------------
``proxy.routing`` compiles a config into a route table once; everything that only depends on
the config (names, ids, header plans, bucket tables, salted hash states, matcher closures) is
computed there, in Python, with its error reporting. What runs per request lives here:

- ``EndpointGroup``: the endpoints of one version; ``next`` hands them out round robin;
- ``Target``: one (route, version) with its precomputed parts; ``Decision``: what routing
  decided for one request (the target plus the endpoint, labels, sticky hash and mirror);
- ``HeaderTest``: a content-rule test on one request header, as data (read in C);
- ``VersionChoice``: content rules, then the (sticky) split; ``MirrorChoice``: the shadow copy;
- ``CompiledRoute``: one route; ``Router``: the base of ``RouteTable`` with ``decide``,
  ``match`` and ``choose`` (first-match route order, see ``proxy.routing.table``).

This file is plain Python and is also compiled by Cython as ``_routing_c`` with the C types
declared in ``_routing_c.pxd``: the classes become extension types whose per-request fields
are C fields, so a decision on the usual configs runs without entering the interpreter,
except for the matcher closures of routes that have checks beyond the path. Both forms must
give identical decisions (tests/_fast/test_routing_twins.py compares them).

Nothing here imports ``proxy.routing`` (which imports this module); the table hands in what
it needs (the ``RequestView`` class, the label parser, the stats).
"""

from __future__ import annotations

import itertools

from proxy._fast import load
from proxy.errors import NoHealthyUpstream, NoRoute

# Entries of a split's bucket table (see proxy.routing.choice).
BUCKETS = 10_000

# HeaderTest kinds.
EXACT = 0
PREFIX = 1
REGEX = 2
PRESENT = 3
ABSENT = 4
KINDS = {"exact": EXACT, "prefix": PREFIX, "regex": REGEX, "present": PRESENT, "absent": ABSENT}

_lookup_prefix = load("matching").lookup_prefix
_hash_key = load("hashing").hash_key


def header_value(headers: list, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case) in a parsed header list, else None.

    The same as ``matching.first_value``; a copy here so that compiled it is a C call, not a
    call into another extension (routing reads one or two headers per request).
    """
    for key, value in headers:
        if key == name:
            return value
    return None


class EndpointGroup:
    """The endpoints of one version of a service.

    ``next`` is a bound ``__next__`` of an endpoint cycle (round robin at C speed), or None
    when the version has no endpoint; ``set_endpoints`` swaps it in one assignment, so health
    checking can change a group while requests read it.
    """

    __slots__ = ("service", "version", "version_id", "endpoints", "next")

    def __init__(self, service: str, version: str, version_id: int, endpoints: object) -> None:
        self.service = service
        self.version = version
        self.version_id = version_id  # index in RouteTable.versions
        self.endpoints = ()
        self.next = None
        self.set_endpoints(endpoints)

    def set_endpoints(self, endpoints: object) -> None:
        self.endpoints = tuple(endpoints)
        if not self.endpoints:
            self.next = None
        elif len(self.endpoints) == 1:
            self.next = itertools.repeat(self.endpoints[0]).__next__
        else:
            self.next = itertools.cycle(self.endpoints).__next__


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
        "request_remove",
        "request_extra",
        "response_remove",
        "response_extra",
        "fallback",
        "stats_slot",
    )

    def __init__(
        self,
        route_name: str,
        route_id: int,
        group: EndpointGroup,
        request_plan: object,
        response_plan: object,
    ) -> None:
        self.route_name = route_name
        self.route_id = route_id  # index in RouteTable.route_names
        self.version_name = group.version
        self.version_id = group.version_id  # index in RouteTable.versions
        self.group = group
        self.request_plan = request_plan
        self.response_plan = response_plan
        # The plans' parts, read per request as fields (a NamedTuple's getattr is not free);
        # None when nothing is removed, so the data plane tests one pointer.
        self.request_remove = request_plan.remove or None
        self.request_extra = request_plan.extra
        self.response_remove = response_plan.remove or None
        self.response_extra = response_plan.extra
        # Where this version's share goes when it has no endpoint: the route's target for the
        # stable version, or None (answer 503) for the stable version itself or on_empty_version "503".
        self.fallback = None
        # Index of this (route, version) in the request counters; they outlive reloads,
        # so the server assigns it by name after compiling (proxy.observe.counters).
        self.stats_slot = 0

    def new_decision(self, endpoint: object, labels: object, sticky_hash: int, mirror: object) -> Decision:
        """A ``Decision`` for this target."""
        return _decision(self, endpoint, labels, sticky_hash, mirror)

    def __repr__(self) -> str:
        return f"Target({self.route_name} -> {self.group.service}/{self.version_name})"


class Decision:
    """What routing decided for one request: ``target.new_decision(endpoint, labels, sticky_hash, mirror)``.

    The names, ids and header plans are the target's (read-only properties); the data plane may
    move ``endpoint`` to another endpoint of the version for a connect retry. Compared by identity.
    """

    __slots__ = ("target", "endpoint", "labels", "sticky_hash", "mirror")

    def __init__(
        self, target: Target, endpoint: object, labels: object, sticky_hash: int, mirror: object
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
    def request_plan(self) -> object:
        return self.target.request_plan

    @property
    def response_plan(self) -> object:
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


def _decision(target: Target, endpoint: object, labels: object, sticky_hash: int, mirror: object) -> Decision:
    # Compiled, __new__ on the extension type is one C allocation and the fields are C stores,
    # no argument parsing of __init__.
    decision = Decision.__new__(Decision)
    decision.target = target
    decision.endpoint = endpoint
    decision.labels = labels
    decision.sticky_hash = sticky_hash
    decision.mirror = mirror
    return decision


class HeaderTest:
    """``test(headers)``: the first value of header ``name`` against one StringMatch, on the
    request's parsed header list. ``kind`` is EXACT, PREFIX (``operand`` bytes), REGEX
    (``operand`` a compiled pattern's ``fullmatch``), PRESENT or ABSENT."""

    __slots__ = ("name", "kind", "operand")

    def __init__(self, name: bytes, kind: str, operand: object) -> None:
        self.name = name
        self.kind = KINDS[kind]
        self.operand = operand

    def test(self, headers: list) -> bool:
        value = header_value(headers, self.name)
        kind = self.kind
        if kind == EXACT:
            return value == self.operand
        if kind == PREFIX:
            return value is not None and value.startswith(self.operand)
        if kind == REGEX:
            return value is not None and self.operand(value) is not None
        if kind == PRESENT:
            return value is not None
        return value is None

    def __call__(self, headers: list) -> bool:
        return self.test(headers)


class VersionChoice:
    """``choose(view)`` -> (Target, sticky_hash or -1) for one route; see proxy.routing.choice.

    ``header_rules`` is the rules in ``HeaderTest`` form, or None when some rule needs more
    than the headers. When it is not None and the sticky key, if any, is a header (the usual
    canary), ``needs_view`` is False and ``choose_headers(req.headers)`` gives the same answer
    without a ``RequestView``.
    """

    __slots__ = (
        "rules", "targets", "table", "constant", "sticky", "rand", "needs_view", "header_rules", "fixed",
        "sticky_header", "sticky_state",
    )  # fmt: skip

    def __init__(
        self,
        targets: object,
        rules: object,
        header_rules: object,
        table: object,
        constant: Target | None,
        sticky: object,
        rand: object,
    ) -> None:
        self.targets = tuple(targets)  # by slot (the service's version order)
        self.rules = tuple(rules)  # (checks, target) in order
        self.header_rules = None  # ((HeaderTest, ...), target) in order
        if header_rules is not None:
            self.header_rules = tuple((tuple(tests), target) for tests, target in header_rules)
        self.table = table  # None when one version takes every bucket
        self.constant = constant  # that version, when table is None
        self.sticky = sticky if table is not None else None  # one version: no key to hash
        self.rand = rand
        # The sticky key's parts, read per request (a StickyKey's header is None unless the
        # key is the first value of a header).
        self.sticky_header = self.sticky.header if self.sticky is not None else None
        self.sticky_state = self.sticky.state if self.sticky is not None else 0
        self.needs_view = self.header_rules is None or (
            self.sticky is not None and self.sticky_header is None
        )
        # One version and no rule: the answer needs nothing from the request.
        self.fixed = constant if table is None and not self.rules else None

    def choose(self, view: object) -> tuple:
        for checks, target in self.rules:
            for check in checks:
                if not check(view):
                    break
            else:
                return target, -1
        sticky = self.sticky
        return self._split(sticky.fetch(view) if sticky is not None else None)

    def choose_headers(self, headers: list) -> tuple:
        """``choose`` on the request's header list; only when ``needs_view`` is False."""
        for tests, target in self.header_rules:
            for test in tests:
                if not test.test(headers):
                    break
            else:
                return target, -1
        header = self.sticky_header
        return self._split(header_value(headers, header) if header is not None else None)

    def _split(self, key: object) -> tuple:
        """The split's version: by the sticky ``key`` when there is one, else at random."""
        table = self.table
        if table is None:
            return self.constant, -1
        if key:
            h = _hash_key(self.sticky_state, key)
            return self.targets[table[h % BUCKETS]], h
        return self.targets[table[int(self.rand() * BUCKETS)]], -1


class MirrorChoice:
    """Which requests of a route get a shadow copy, and where it goes."""

    __slots__ = ("group", "probability", "max_pending", "rand")

    def __init__(self, group: EndpointGroup, percent: float, max_pending: int, rand: object) -> None:
        self.group = group
        self.probability = percent / 100.0
        self.max_pending = max_pending  # for the data plane: shadow requests in flight at most
        self.rand = rand

    def pick(self, version_id: int) -> object:
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


class CompiledRoute:
    """One route of the table: its checks beyond the path, its version choice and mirror."""

    __slots__ = ("name", "id", "service", "checks", "choice", "mirror")

    def __init__(
        self,
        name: str,
        route_id: int,
        service: str,
        checks: object,
        choice: VersionChoice,
        mirror: MirrorChoice | None,
    ) -> None:
        self.name = name
        self.id = route_id
        self.service = service
        self.checks = tuple(checks)
        self.choice = choice
        self.mirror = mirror

    def __repr__(self) -> str:
        return f"CompiledRoute({self.id}: {self.name} -> {self.service})"


class Router:
    """The per-request part of ``RouteTable`` (its base class), which fills these fields:

    ``_exact``/``_nodes``/``_root`` (the path index), ``_view`` (the RequestView class),
    ``_labels`` (the label parser), ``uses_labels``, ``stats`` (RoutingStats).
    """

    __slots__ = ("_exact", "_nodes", "_root", "_view", "_labels", "uses_labels", "stats")

    def decide(self, req: object, client_ip: str, claims: dict | None = None) -> Decision:
        """Route one request: NoRoute (404) when nothing matches, NoHealthyUpstream (503) when
        neither the chosen version nor its fallback has an endpoint."""
        found = self._match(req, client_ip)
        return self._choose(found[0], found[1], req, client_ip, claims)

    def match(self, req: object, client_ip: str) -> tuple:
        """The first route that matches (NoRoute when none does) and the view built on the way, if any.

        The data plane runs the route's policies (``proxy.policy``) between ``match`` and ``choose``.
        """
        return self._match(req, client_ip)

    def choose(
        self, route: CompiledRoute, view: object, req: object, client_ip: str, claims: dict | None = None
    ) -> Decision:
        """The version and endpoint for a matched route; ``claims`` are the route's verified JWT
        claims (``Identity.route_claims``) for content rules and a sticky claim."""
        return self._choose(route, view, req, client_ip, claims)

    def _match(self, req: object, client_ip: str) -> tuple:
        path = req.path
        candidates = self._exact.get(path)
        if candidates is None:
            nodes = self._nodes
            candidates = _lookup_prefix(nodes, path, self._root) if nodes else self._root
        view = None
        for route in candidates:
            checks = route.checks
            if not checks:
                return route, view
            if view is None:
                view = self._view(req, client_ip, self._labels)
            for check in checks:
                if not check(view):
                    break
            else:
                return route, view
        raise NoRoute("no route matches the request")

    def _choose(
        self, route: CompiledRoute, view: object, req: object, client_ip: str, claims: object
    ) -> Decision:
        choice = route.choice
        target = choice.fixed
        sticky_hash = -1
        if target is None:
            if choice.needs_view:
                if view is None:
                    view = self._view(req, client_ip, self._labels, claims)
                else:
                    view.claims = claims
                chosen = choice.choose(view)
            else:
                chosen = choice.choose_headers(req.headers)
            target = chosen[0]
            sticky_hash = chosen[1]
        pick = target.group.next
        if pick is None:
            target = self._fallback(target)
            pick = target.group.next
        mirror = route.mirror
        mirror_endpoint = None
        if mirror is not None:
            mirror_endpoint = mirror.pick(target.version_id)
        labels = None
        if self.uses_labels:
            labels = self._labels(req) if view is None else view.labels()
        return _decision(target, pick(), labels, sticky_hash, mirror_endpoint)

    def _fallback(self, target: Target) -> Target:
        fallback = target.fallback
        if fallback is None or fallback.group.next is None:
            raise NoHealthyUpstream(f"no endpoint for {target.group.service}/{target.version_name}")
        self.stats.empty_version_fallbacks += 1
        return fallback
