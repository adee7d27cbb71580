"""Checks that span fields, run on a converted ``Config``.

Each check is a small generator of ``Problem``s; ``CHECKS`` lists them all and
``find_problems`` runs every one, so a file with five mistakes gets five lines.
The schema has already checked types; these check meaning: references between
sections, address syntax, tokens, regexes, ranges and "exactly one of".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator

from proxy.config.addresses import parse_host_port
from proxy.config.paths import Path, Problem, format_path
from proxy.config.schema import Config, HeaderOps, Match, PathMatch, Pool, Route, StringMatch

Check = Callable[[Config], Iterator[Problem]]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 token (header names, methods)
_BAD_VALUE_CHARS = re.compile(r"[\r\n\0]")  # would split or end a header line


def find_problems(config: Config) -> list[Problem]:
    return [problem for check in CHECKS for problem in check(config)]


def validate(config: Config) -> list[str]:
    """Every problem as ``path: what is wrong``; empty when the config is usable."""
    return [f"{format_path(p.path)}: {p.message}" for p in find_problems(config)]


# --- listeners ----------------------------------------------------------------


def check_listeners(config: Config) -> Iterator[Problem]:
    if not config.listeners:
        yield Problem(("listeners",), "at least one listener is needed")
    used: dict[tuple[str, int], int] = {}
    for i, listener in enumerate(config.listeners):
        try:
            host, port = parse_host_port(listener.address, allow_port_zero=True)
        except ValueError as e:
            yield Problem(("listeners", i, "address"), str(e))
            continue
        key = (host.lower(), port)
        if port and key in used:  # port 0 asks for a fresh port each time: never a clash
            yield Problem(
                ("listeners", i, "address"), f"{listener.address!r} is already used by listeners[{used[key]}]"
            )
        used.setdefault(key, i)


def check_workers(config: Config) -> Iterator[Problem]:
    if isinstance(config.workers, int) and not 1 <= config.workers <= 256:
        yield Problem(("workers",), f"must be from 1 to 256 or \"auto\", not {config.workers}")


def check_admin(config: Config) -> Iterator[Problem]:
    admin = config.admin
    if admin is None:
        return
    try:
        host, _ = parse_host_port(admin.address, allow_port_zero=True)
    except ValueError as e:
        yield Problem(("admin", "address"), str(e))
        return
    if not is_loopback(host) and not admin.token:
        reason = f"a token is required when the admin API listens on {host} (not loopback)"
        yield Problem(("admin", "token"), reason)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_tls_files(config: Config) -> Iterator[Problem]:
    for i, listener in enumerate(config.listeners):
        if listener.tls is None:
            continue
        for field in ("cert", "key"):
            file = getattr(listener.tls, field)
            try:
                with open(file, "rb"):
                    pass
            except OSError as e:
                yield Problem(("listeners", i, "tls", field), f"cannot read {file!r}: {e.strerror or e}")


# --- services -----------------------------------------------------------------


def check_versions(config: Config) -> Iterator[Problem]:
    for name, service in config.services.items():
        if not service.versions:
            yield Problem(("services", name, "versions"), "a service needs at least one version")
        elif service.stable is not None and service.stable not in service.versions:
            yield Problem(
                ("services", name, "stable"),
                f"{service.stable!r} is not a version of {name!r} ({_names(service.versions)})",
            )


def check_endpoints(config: Config) -> Iterator[Problem]:
    for name, service in config.services.items():
        for version, spec in service.versions.items():
            for i, endpoint in enumerate(spec.endpoints):
                try:
                    parse_host_port(endpoint)
                except ValueError as e:
                    yield Problem(("services", name, "versions", version, "endpoints", i), str(e))


# --- routes -------------------------------------------------------------------


def check_route_names(config: Config) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for i, route in enumerate(config.routes):
        if not route.name:
            yield Problem(("routes", i, "name"), "must not be empty")
        elif route.name in first:
            yield Problem(
                ("routes", i, "name"), f"{route.name!r} is already the name of routes[{first[route.name]}]"
            )
        first.setdefault(route.name, i)


def check_route_targets(config: Config) -> Iterator[Problem]:
    """The service exists, and every version a route names is one of its versions."""
    for i, route in enumerate(config.routes):
        service = config.services.get(route.service)
        if service is None:
            yield Problem(
                ("routes", i, "service"), f"no service named {route.service!r} ({_names(config.services)})"
            )
            continue
        for path, version in _named_versions(route, ("routes", i)):
            if version not in service.versions:
                yield Problem(
                    path, f"{version!r} is not a version of {route.service!r} ({_names(service.versions)})"
                )


def _named_versions(route: Route, at: Path) -> Iterator[tuple[Path, str]]:
    for j, rule in enumerate(route.rules):
        yield at + ("rules", j, "version"), rule.version
    for j, entry in enumerate(route.split):
        yield at + ("split", j, "version"), entry.version
    if route.mirror is not None:
        yield at + ("mirror", "version"), route.mirror.version


def check_split(config: Config) -> Iterator[Problem]:
    for i, route in enumerate(config.routes):
        seen: dict[str, int] = {}
        for j, entry in enumerate(route.split):
            if entry.weight < 0:
                yield Problem(("routes", i, "split", j, "weight"), f"must be >= 0, not {entry.weight}")
            if entry.version in seen:
                yield Problem(
                    ("routes", i, "split", j, "version"),
                    f"{entry.version!r} is already in split[{seen[entry.version]}]",
                )
            seen.setdefault(entry.version, j)
        if route.split and all(entry.weight == 0 for entry in route.split):
            yield Problem(("routes", i, "split"), "the weights are all zero")


def check_sticky(config: Config) -> Iterator[Problem]:
    for i, route in enumerate(config.routes):
        sticky = route.sticky
        if sticky is None:
            continue
        sources = [
            name
            for name, on in (
                ("header", sticky.header is not None),
                ("cookie", sticky.cookie is not None),
                ("client_ip", sticky.client_ip),
            )
            if on
        ]
        if len(sources) != 1:
            found = f"{len(sources)}: {', '.join(sources)}" if sources else "none"
            yield Problem(
                ("routes", i, "sticky"), f"set exactly one of header, cookie, client_ip (found {found})"
            )
        if sticky.header is not None and not _TOKEN.match(sticky.header):
            yield Problem(("routes", i, "sticky", "header"), f"{sticky.header!r} is not a valid header name")
        if sticky.cookie is not None and not _TOKEN.match(sticky.cookie):
            yield Problem(("routes", i, "sticky", "cookie"), f"{sticky.cookie!r} is not a valid cookie name")


def check_mirror(config: Config) -> Iterator[Problem]:
    for i, route in enumerate(config.routes):
        if route.mirror is None:
            continue
        if not 0 <= route.mirror.percent <= 100:
            yield Problem(
                ("routes", i, "mirror", "percent"), f"must be from 0 to 100, not {route.mirror.percent}"
            )
        if route.mirror.max_pending <= 0:
            yield Problem(("routes", i, "mirror", "max_pending"), "must be > 0")


# --- matching -----------------------------------------------------------------


def _matches(config: Config) -> Iterator[tuple[Path, Match]]:
    for i, route in enumerate(config.routes):
        yield ("routes", i, "match"), route.match
        for j, rule in enumerate(route.rules):
            yield ("routes", i, "rules", j, "match"), rule.match


def check_string_matches(config: Config) -> Iterator[Problem]:
    for path, match in _matches(config):
        if match.path is not None:
            yield from _one_matcher(path + ("path",), match.path)
        for section in ("headers", "query", "cookies", "labels"):
            for name, matcher in getattr(match, section).items():
                yield from _one_matcher(path + (section, name), matcher)


def _one_matcher(path: Path, matcher: StringMatch | PathMatch) -> Iterator[Problem]:
    names = matcher.__struct_fields__
    found = [f for f in names if getattr(matcher, f) is not None]
    if len(found) != 1:
        yield Problem(path, f"set exactly one of {', '.join(names)} (found {', '.join(found) or 'none'})")
    pattern = getattr(matcher, "regex", None)
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as e:
            yield Problem(path + ("regex",), f"invalid regex {pattern!r}: {e.msg} at position {e.pos}")


def check_match_names(config: Config) -> Iterator[Problem]:
    for path, match in _matches(config):
        for j, method in enumerate(match.methods):
            if not _TOKEN.match(method) or method != method.upper():
                yield Problem(path + ("methods", j), f"{method!r} is not an upper-case method (e.g. GET)")
        for name in match.headers:
            if not _TOKEN.match(name):
                yield Problem(path + ("headers", name), "not a valid header name")
        for name in match.cookies:
            if not _TOKEN.match(name):
                yield Problem(path + ("cookies", name), "not a valid cookie name")
        for j, host in enumerate(match.host):
            if not host or any(c.isspace() for c in host) or "*" in host.removeprefix("*."):
                yield Problem(path + ("host", j), f"{host!r} is not a host name ('*.' only at the start)")


# --- headers ------------------------------------------------------------------


def _header_ops(config: Config) -> Iterator[tuple[Path, HeaderOps]]:
    for name, service in config.services.items():
        for version, spec in service.versions.items():
            at = ("services", name, "versions", version)
            yield at + ("request_headers",), spec.request_headers
            yield at + ("response_headers",), spec.response_headers
    for i, route in enumerate(config.routes):
        yield ("routes", i, "request_headers"), route.request_headers
        yield ("routes", i, "response_headers"), route.response_headers


def check_header_ops(config: Config) -> Iterator[Problem]:
    for path, ops in _header_ops(config):
        for section in ("set", "add"):
            for name, value in getattr(ops, section).items():
                if not _TOKEN.match(name):
                    yield Problem(path + (section, name), "not a valid header name")
                if _BAD_VALUE_CHARS.search(value):
                    yield Problem(path + (section, name), "header values must not contain CR, LF or NUL")
        for j, name in enumerate(ops.remove):
            if not _TOKEN.match(name):
                yield Problem(path + ("remove", j), f"{name!r} is not a valid header name")


def check_named_headers(config: Config) -> Iterator[Problem]:
    named = (
        (("metadata", "header"), config.metadata.header),
        (("observability", "version_header"), config.observability.version_header),
        (("observability", "request_id_header"), config.observability.request_id_header),
    )
    for path, name in named:
        if name is not None and not _TOKEN.match(name):
            yield Problem(path, f"{name!r} is not a valid header name")


# --- limits -------------------------------------------------------------------


def check_limits(config: Config) -> Iterator[Problem]:
    for field in config.limits.__struct_fields__:
        if getattr(config.limits, field) <= 0:
            yield Problem(("limits", field), "must be > 0")
    if config.metadata.max_bytes <= 0:
        yield Problem(("metadata", "max_bytes"), "must be > 0")
    yield from _pool_problems(("upstream",), config.upstream)
    for name, service in config.services.items():
        if service.pool is not None:
            yield from _pool_problems(("services", name, "pool"), service.pool)


def _pool_problems(path: Path, pool: Pool) -> Iterator[Problem]:
    # max_idle 0 turns pooling off; request_timeout 0 turns the overall deadline off.
    for field in ("max_idle", "request_timeout"):
        if getattr(pool, field) < 0:
            yield Problem(path + (field,), "must be >= 0")
    for field in ("idle_timeout", "connect_timeout", "response_head_timeout"):
        if getattr(pool, field) <= 0:
            yield Problem(path + (field,), "must be > 0")


def _names(mapping: dict[str, object]) -> str:
    return "defined: " + ", ".join(mapping) if mapping else "none defined"


CHECKS: tuple[Check, ...] = (
    check_listeners,
    check_workers,
    check_admin,
    check_tls_files,
    check_versions,
    check_endpoints,
    check_route_names,
    check_route_targets,
    check_split,
    check_sticky,
    check_mirror,
    check_string_matches,
    check_match_names,
    check_header_ops,
    check_named_headers,
    check_limits,
)
