"""The route table: a config compiled into what ``decide()`` needs per request.

Theory of operation
-------------------
``RouteTable(config)`` does all the work that does not depend on a request: endpoint
groups per (service, version), matcher closures, the path index, split bucket
tables, salted hash states, header plans per (route, version). A table is immutable
once built (only its counters and round-robin positions move); a reload builds a new
one and the data plane swaps one reference.

``decide(req, client_ip)`` per request:
1. candidates = the path index's routes for the path (in config order);
2. the first candidate whose checks all pass is the route (Istio's first match wins);
   a ``RequestView`` (lazy host/header/cookie/query/label parsing) is built only when
   a route or its version choice needs more than the path (a version choice on headers
   alone, the usual canary, reads the parsed header list directly);
3. the route's ``VersionChoice`` picks a ``Target`` (route x version): content rules,
   else the (sticky) split;
4. an empty version's share goes to the stable version or is a 503 (Service.on_empty_version);
5. the endpoint is the target group's next (round robin); the mirror, if any, is drawn;
6. one ``Decision`` is returned.

The per-request steps run in ``proxy._fast.routing`` (``Router``, this table's base class: C when
compiled); this module builds what they read.

``decide`` is ``match`` (steps 1-2) then ``choose`` (steps 3-6). A route with policies
(``auth``, ``rate_limits``: ``proxy.policy``) runs them in between, because they belong
to the route and their result feeds the version choice: the verified JWT's claims
(``claims``) are what content rules on ``claims`` and a sticky ``claim`` read. The
request plan of such a route removes the headers its auth writes (forwarded claims)
so a client cannot send its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy._fast import load
from proxy.config.addresses import parse_host_port
from proxy.config.paths import Path
from proxy.config.schema import Config, Route
from proxy.routing.choice import MirrorChoice, bucket_table, default_rand, version_choice
from proxy.routing.decision import Target
from proxy.routing.endpoints import Endpoint, EndpointGroup
from proxy.routing.matchers import Needs, compile_match, is_token
from proxy.routing.metadata import LabelParser
from proxy.routing.pathindex import PathIndex
from proxy.routing.plans import HeaderPlan, Op, build_plan, compile_ops, header_line
from proxy.routing.problems import Problems
from proxy.routing.stats import RoutingStats
from proxy.routing.sticky import compile_sticky
from proxy.routing.view import RequestView

_routing = load("routing")

# A route of the table: its checks beyond the path, its version choice and mirror.
CompiledRoute = _routing.CompiledRoute


class _Service:
    """Compile-time view of one service: its groups and per-version header ops."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.groups: dict[str, EndpointGroup] = {}  # version -> group, in config order
        self.request_ops: dict[str, list[Op]] = {}
        self.response_ops: dict[str, list[Op]] = {}
        self.version_header_ops: dict[str, list[Op]] = {}  # the response header naming the version
        self.stable = ""
        self.on_empty = "stable"


class RouteTable(_routing.Router):
    """The compiled routing snapshot of one config; ``decide`` is the per-request entry point.

    ``decide``, ``match`` and ``choose`` are ``proxy._fast.routing.Router``'s (compiled: C).
    """

    def __init__(self, config: Config, *, source: str | None = None, seed: int | None = None) -> None:
        """Compile ``config``; ConfigError lists every problem found (``source`` prefixes them).

        ``seed`` makes the per-request random draws (non-sticky split, mirror) repeatable.
        """
        problems = Problems(source)
        self.config = config
        self.stats = RoutingStats()
        self._rand = default_rand(seed)
        self._needs = Needs()
        self._plans: dict[HeaderPlan, HeaderPlan] = {}
        self.versions: list[tuple[str, str]] = []  # (service, version) by version_id
        self.endpoints: list[Endpoint] = []  # every endpoint of every version
        self.targets: list[Target] = []  # every (route, version), for per-target counters
        meta = config.metadata
        self._strip_ops: list[Op] = []
        if not is_token(meta.header):
            problems.add(("metadata", "header"), f"not a valid header name: {meta.header!r}")
        elif meta.strip:
            self._strip_ops.append(("remove", meta.header.lower().encode("latin-1"), b""))
        self._version_header = config.observability.version_header
        if self._version_header is not None:
            at: Path = ("observability", "version_header")
            if header_line("set", self._version_header, "v", at, problems) is None:
                self._version_header = None
        self._services = {name: self._compile_service(name, config, problems) for name in config.services}

        routes: list[CompiledRoute] = []
        paths: list[tuple[str, bytes] | None] = []
        first_of: dict[str, int] = {}
        for i, route in enumerate(config.routes):
            if route.name in first_of:
                problems.add(
                    ("routes", i, "name"),
                    f"{route.name!r} is already the name of routes[{first_of[route.name]}]",
                )
            first_of.setdefault(route.name, i)
            compiled = self._compile_route(i, route, problems)
            if compiled is not None:
                routes.append(compiled[0])
                paths.append(compiled[1])
        problems.raise_if_any()

        self.routes: tuple[CompiledRoute, ...] = tuple(routes)
        self.route_names: tuple[str, ...] = tuple(route.name for route in config.routes)
        index = PathIndex(routes, paths)
        self._exact = index.exact
        self._nodes = index.nodes
        self._root = index.root
        self._labels = LabelParser(meta, self.stats)
        self._view = RequestView
        self.uses_labels = self._needs.labels
        names = set(self._needs.headers)
        if self.uses_labels:
            names.add(self._labels.header)
        # Header names routing reads (lower-case): the head parser must keep these.
        self.header_names: frozenset[bytes] = frozenset(names)
        del self._plans, self._needs

    # --- lookups for the rest of graylane ----------------------------------------------

    def group(self, service: str, version: str) -> EndpointGroup:
        """The endpoint group of a version (KeyError if unknown), e.g. for health checking."""
        return self._services[service].groups[version]

    # --- compile ------------------------------------------------------------------------

    def _compile_service(self, name: str, config: Config, problems: Problems) -> _Service:
        spec = config.services[name]
        out = _Service(name)
        pool = spec.pool if spec.pool is not None else config.upstream
        at: Path = ("services", name)
        for version, vspec in spec.versions.items():
            vat = at + ("versions", version)
            endpoints = []
            for k, text in enumerate(vspec.endpoints):
                try:
                    host, port = parse_host_port(text)
                except ValueError as exc:
                    problems.add(vat + ("endpoints", k), str(exc))
                    continue
                endpoints.append(Endpoint(host, port, name, version, pool))
            self.endpoints.extend(endpoints)
            out.groups[version] = EndpointGroup(name, version, len(self.versions), endpoints)
            self.versions.append((name, version))
            out.request_ops[version] = compile_ops(
                vspec.request_headers, vat + ("request_headers",), problems
            )
            out.response_ops[version] = compile_ops(
                vspec.response_headers, vat + ("response_headers",), problems
            )
            op = None
            if self._version_header is not None:
                op = header_line("set", self._version_header, version, vat, problems)
            out.version_header_ops[version] = [op] if op is not None else []
        if not spec.versions:
            problems.add(at + ("versions",), "a service needs at least one version")
        elif spec.stable is not None and spec.stable not in spec.versions:
            problems.add(at + ("stable",), f"{spec.stable!r} is not a version of {name!r}")
        else:
            out.stable = spec.stable if spec.stable is not None else next(iter(spec.versions))
        out.on_empty = spec.on_empty_version
        return out

    def _compile_route(
        self, i: int, route: Route, problems: Problems
    ) -> tuple[CompiledRoute, tuple[str, bytes] | None] | None:
        at: Path = ("routes", i)
        needs = self._needs
        checks, path = compile_match(route.match, at + ("match",), problems, needs, path_indexed=True)
        service = self._services.get(route.service)
        if service is None:
            problems.add(at + ("service",), f"no service named {route.service!r}")
            return None
        if not service.stable:
            return None  # the service's own problem is reported already
        _check_claims(route, at, problems)
        targets = self._targets(i, route, service, problems)
        slot_of = {version: slot for slot, version in enumerate(service.groups)}

        def slot(version: str, where: Path) -> int | None:
            found = slot_of.get(version)
            if found is None:
                problems.add(where, f"{version!r} is not a version of {route.service!r}")
            return found

        rules = []
        for j, rule in enumerate(route.rules):
            rule_checks, _ = compile_match(rule.match, at + ("rules", j, "match"), problems, needs)
            found = slot(rule.version, at + ("rules", j, "version"))
            if found is not None:
                rules.append((rule_checks, targets[found]))

        table, constant = self._split(route, at, slot, slot_of[service.stable], problems)
        sticky = None
        if route.sticky is not None:
            sticky = compile_sticky(route.sticky, route.name, at + ("sticky",), problems, needs)
        choice = version_choice(
            targets, rules, table, targets[constant] if constant is not None else None, sticky, self._rand
        )

        mirror = None
        if route.mirror is not None:
            spec = route.mirror
            found = slot(spec.version, at + ("mirror", "version"))
            if not 0 <= spec.percent <= 100:
                problems.add(at + ("mirror", "percent"), f"must be from 0 to 100, not {spec.percent}")
            elif found is not None and spec.percent > 0:
                group = service.groups[spec.version]
                mirror = MirrorChoice(group, spec.percent, spec.max_pending, self._rand)
        return CompiledRoute(route.name, i, route.service, checks, choice, mirror), path

    def _targets(self, i: int, route: Route, service: _Service, problems: Problems) -> list[Target]:
        at: Path = ("routes", i)
        route_req = compile_ops(route.request_headers, at + ("request_headers",), problems)
        route_req = _auth_strip_ops(route) + route_req
        route_resp = compile_ops(route.response_headers, at + ("response_headers",), problems)
        targets = []
        for version, group in service.groups.items():
            request_plan = self._intern(
                build_plan([self._strip_ops, route_req, service.request_ops[version]])
            )
            response_plan = self._intern(
                build_plan([route_resp, service.response_ops[version], service.version_header_ops[version]])
            )
            targets.append(Target(route.name, i, group, request_plan, response_plan))
        self.targets.extend(targets)
        stable = targets[list(service.groups).index(service.stable)]
        if service.on_empty == "stable":
            for target in targets:
                if target is not stable:
                    target.fallback = stable
        return targets

    def _split(
        self, route: Route, at: Path, slot, stable: int, problems: Problems
    ) -> tuple[Sequence[int] | None, int | None]:
        """(bucket table, None) for a real split; (None, slot) when one version takes everything."""
        if not route.split:
            return None, stable
        weights: list[tuple[int, int]] = []
        seen: dict[str, int] = {}
        for j, entry in enumerate(route.split):
            where = at + ("split", j)
            if entry.version in seen:
                problems.add(
                    where + ("version",), f"{entry.version!r} is already in split[{seen[entry.version]}]"
                )
                continue
            seen[entry.version] = j
            if entry.weight < 0:
                problems.add(where + ("weight",), f"must be >= 0, not {entry.weight}")
                continue
            found = slot(entry.version, where + ("version",))
            if found is not None:
                weights.append((found, entry.weight))
        if not any(weight for _, weight in weights):
            if len(weights) == len(route.split):
                problems.add(at + ("split",), "the weights are all zero")
            return None, stable
        used = {s for s, weight in weights if weight > 0}
        if len(used) == 1:
            return None, used.pop()
        return bucket_table(weights, stable), None

    def _intern(self, plan: HeaderPlan) -> HeaderPlan:
        """Equal plans share one object (most routes have the same few plans)."""
        return self._plans.setdefault(plan, plan)


def _check_claims(route: Route, at: Path, problems: Problems) -> None:
    """Claims exist only after the route's auth has run, which is after the route was matched."""
    if route.match.claims:
        reason = "claims can be matched in rules only (auth runs once the route is chosen)"
        problems.add(at + ("match", "claims"), reason)
    if route.auth is None:
        for j, rule in enumerate(route.rules):
            if rule.match.claims:
                reason = "matching claims needs auth.jwt on the route"
                problems.add(at + ("rules", j, "match", "claims"), reason)
        if route.sticky is not None and route.sticky.claim is not None:
            problems.add(at + ("sticky", "claim"), "a sticky claim needs auth.jwt on the route")


def _auth_strip_ops(route: Route) -> list[Op]:
    """Request headers the route's auth owns: the claim headers it forwards (a client must not
    send its own X-User-ID) and, with ``forward_token: false``, the token's header."""
    if route.auth is None:
        return []
    jwt = route.auth.jwt
    names = [header for header in jwt.forward_claims.values() if is_token(header)]
    if not jwt.forward_token and jwt.cookie is None:
        names.append(jwt.header if jwt.header is not None else "Authorization")
    return [("remove", name.lower().encode("latin-1"), b"") for name in names]
