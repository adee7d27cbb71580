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
from urllib.parse import urlsplit

from proxy.config.addresses import parse_host_port
from proxy.config.paths import Path, Problem, format_path
from proxy.config.schema import (
    Analysis,
    Config,
    HeaderOps,
    Match,
    PathMatch,
    PauseUntil,
    Pool,
    Route,
    StringMatch,
    Webhook,
)
from proxy.config.units import parse_duration

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
        yield Problem(("workers",), f'must be from 1 to 256 or "auto", not {config.workers}')


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
                ("claim", sticky.claim is not None),
            )
            if on
        ]
        if len(sources) != 1:
            found = f"{len(sources)}: {', '.join(sources)}" if sources else "none"
            reason = f"set exactly one of header, cookie, client_ip, claim (found {found})"
            yield Problem(("routes", i, "sticky"), reason)
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
        for section in ("headers", "query", "cookies", "labels", "claims"):
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
    )
    for path, name in named:
        if name is not None and not _TOKEN.match(name):
            yield Problem(path, f"{name!r} is not a valid header name")


# --- limits -------------------------------------------------------------------


def check_limits(config: Config) -> Iterator[Problem]:
    for field in config.limits.__struct_fields__:
        value = getattr(config.limits, field)
        if not isinstance(value, bool) and value <= 0:
            yield Problem(("limits", field), "must be > 0")
    via = config.protocol.via
    if isinstance(via, str) and via and not _TOKEN.match(via):
        # The received-by of a Via member (RFC 9110 7.6.3): a pseudonym is a token.
        yield Problem(("protocol", "via"), f"{via!r} is not a token (letters, digits, - . _ ...)")
    if config.metadata.max_bytes <= 0:
        yield Problem(("metadata", "max_bytes"), "must be > 0")
    yield from _pool_problems(("upstream",), config.upstream)
    for name, service in config.services.items():
        if service.pool is not None:
            yield from _pool_problems(("services", name, "pool"), service.pool)


def _pool_problems(path: Path, pool: Pool) -> Iterator[Problem]:
    # max_idle 0 turns pooling off; request_timeout 0 turns the overall deadline off, and
    # response_idle_timeout 0 the one between two reads of a response body.
    for field in ("max_idle", "request_timeout", "response_idle_timeout"):
        if getattr(pool, field) < 0:
            yield Problem(path + (field,), "must be >= 0")
    for field in ("idle_timeout", "connect_timeout", "response_head_timeout"):
        if getattr(pool, field) <= 0:
            yield Problem(path + (field,), "must be > 0")


# --- rollouts -----------------------------------------------------------------


def check_rollouts(config: Config) -> Iterator[Problem]:
    """The canary is a version of the route's service (not its stable one); steps make sense."""
    for i, route in enumerate(config.routes):
        rollout = route.rollout
        if rollout is None:
            continue
        at: Path = ("routes", i, "rollout")
        service = config.services.get(route.service)
        if service is not None and service.versions:
            stable = service.stable if service.stable is not None else next(iter(service.versions))
            if rollout.canary not in service.versions:
                yield Problem(
                    at + ("canary",),
                    f"{rollout.canary!r} is not a version of {route.service!r} ({_names(service.versions)})",
                )
            elif rollout.canary == stable:
                yield Problem(
                    at + ("canary",), f"{rollout.canary!r} is the stable version of {route.service!r}"
                )
        if not rollout.steps:
            yield Problem(at + ("steps",), "a rollout needs at least one step")
        for j, step in enumerate(rollout.steps):
            where = at + ("steps", j)
            if (step.set_weight is None) == (step.pause is None):
                yield Problem(where, "set exactly one of set_weight, pause")
            if step.set_weight is not None and not 0 <= step.set_weight <= 100:
                yield Problem(
                    where + ("set_weight",), f"must be from 0 to 100 (percent), not {step.set_weight}"
                )
            yield from _pause_problems(where + ("pause",), step.pause)
        if rollout.analysis is not None:
            yield from _analysis_problems(at + ("analysis",), rollout.analysis)
        for j, hook in enumerate(rollout.webhooks):
            yield from _webhook_problems(at + ("webhooks", j), hook)


def _pause_problems(path: Path, pause: PauseUntil | str | float | None) -> Iterator[Problem]:
    if pause is None:
        return
    if isinstance(pause, PauseUntil):
        if pause.duration is not None and pause.duration <= 0:
            yield Problem(path + ("duration",), "must be > 0 (leave it out to pause until promoted)")
        return
    try:
        seconds = parse_duration(pause)
    except (TypeError, ValueError) as e:
        yield Problem(path, f"{e} (or {{}} to pause until promoted)")
        return
    if seconds <= 0:
        yield Problem(path, "must be > 0 (write {} to pause until promoted)")


def _analysis_problems(path: Path, analysis: Analysis) -> Iterator[Problem]:
    if analysis.interval <= 0:
        yield Problem(path + ("interval",), "must be > 0")
    if analysis.min_requests < 0:
        yield Problem(path + ("min_requests",), "must be >= 0")
    if analysis.failure_limit < 1:
        yield Problem(path + ("failure_limit",), "must be >= 1")
    if analysis.max_inconclusive is not None and analysis.max_inconclusive < 1:
        yield Problem(path + ("max_inconclusive",), "must be >= 1 (leave it out to never pause)")
    for field in ("max_error_rate", "max_error_rate_increase"):
        ratio = getattr(analysis, field)
        if ratio is not None and not 0 <= ratio <= 1:
            yield Problem(path + (field,), f"a ratio from 0 to 1 (0.05 = 5%), not {ratio}")
    if analysis.max_p99 is not None and analysis.max_p99 <= 0:
        yield Problem(path + ("max_p99",), "must be > 0")


def _webhook_problems(path: Path, hook: Webhook) -> Iterator[Problem]:
    if not hook.name:
        yield Problem(path + ("name",), "must not be empty")
    url = urlsplit(hook.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        yield Problem(path + ("url",), f"{hook.url!r} is not an http:// or https:// URL with a host")
    else:
        try:
            url.port  # noqa: B018  (raises on a bad port)
        except ValueError as e:
            yield Problem(path + ("url",), f"{hook.url!r}: {e}")
    if not hook.events:
        yield Problem(path + ("events",), "name at least one event (step, promoted, aborted)")
    if hook.timeout <= 0:
        yield Problem(path + ("timeout",), "must be > 0")
    if hook.retries < 0:
        yield Problem(path + ("retries",), "must be >= 0")
    if hook.backoff <= 0:
        yield Problem(path + ("backoff",), "must be > 0")
    for name, value in hook.headers.items():
        if not _TOKEN.match(name):
            yield Problem(path + ("headers", name), "not a valid header name")
        if _BAD_VALUE_CHARS.search(value):
            yield Problem(path + ("headers", name), "header values must not contain CR, LF or NUL")


def check_rollout_settings(config: Config) -> Iterator[Problem]:
    settings = config.rollouts
    if not settings.state_dir:
        yield Problem(("rollouts", "state_dir"), "must not be empty")
    names: dict[str, int] = {}
    for j, hook in enumerate(settings.webhooks):
        yield from _webhook_problems(("rollouts", "webhooks", j), hook)
        if hook.name in names:
            yield Problem(
                ("rollouts", "webhooks", j, "name"),
                f"{hook.name!r} is already the name of webhooks[{names[hook.name]}]",
            )
        names.setdefault(hook.name, j)


# --- endpoint health ----------------------------------------------------------


def check_health(config: Config) -> Iterator[Problem]:
    for name, service in config.services.items():
        health = service.health
        if health is None:
            continue
        at: Path = ("services", name, "health")
        if not health.path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in health.path):
            yield Problem(at + ("path",), f"{health.path!r} is not a request path (starting with /)")
        for field in ("interval", "timeout"):
            if getattr(health, field) <= 0:
                yield Problem(at + (field,), "must be > 0")
        if not health.expected_statuses:
            yield Problem(at + ("expected_statuses",), "name at least one status")
        for j, status in enumerate(health.expected_statuses):
            if not 100 <= status <= 599:
                yield Problem(at + ("expected_statuses", j), f"{status} is not an HTTP status (100..599)")
        for field in ("healthy_threshold", "unhealthy_threshold"):
            if getattr(health, field) < 1:
                yield Problem(at + (field,), "must be >= 1")
        if health.host is not None and (not health.host or _BAD_VALUE_CHARS.search(health.host)):
            yield Problem(at + ("host",), f"{health.host!r} is not a usable Host header")


def check_outlier(config: Config) -> Iterator[Problem]:
    for name, service in config.services.items():
        outlier = service.outlier
        if outlier is None:
            continue
        at: Path = ("services", name, "outlier")
        if outlier.consecutive_errors < 1:
            yield Problem(at + ("consecutive_errors",), "must be >= 1")
        for field in ("base_ejection_time", "max_ejection_time"):
            if getattr(outlier, field) <= 0:
                yield Problem(at + (field,), "must be > 0")
        if outlier.max_ejection_time < outlier.base_ejection_time:
            yield Problem(at + ("max_ejection_time",), "must be >= base_ejection_time")
        if not 0 <= outlier.max_ejection_percent <= 100:
            yield Problem(
                at + ("max_ejection_percent",), f"must be from 0 to 100, not {outlier.max_ejection_percent}"
            )


def _names(mapping: dict[str, object]) -> str:
    return "defined: " + ", ".join(mapping) if mapping else "none defined"


# --- policies (proxy.policy): JWT auth and rate limits ------------------------------


def check_claim_use(config: Config) -> Iterator[Problem]:
    """Claims exist once the route's auth has run, which is after the route was chosen."""
    for i, route in enumerate(config.routes):
        if route.match.claims:
            reason = "claims can be matched in rules only (auth runs once the route is chosen)"
            yield Problem(("routes", i, "match", "claims"), reason)
        if route.auth is not None:
            continue
        for j, rule in enumerate(route.rules):
            if rule.match.claims:
                yield Problem(("routes", i, "rules", j, "match", "claims"), "needs auth.jwt on the route")
        if route.sticky is not None and route.sticky.claim is not None:
            yield Problem(("routes", i, "sticky", "claim"), "needs auth.jwt on the route")


def check_auth(config: Config) -> Iterator[Problem]:
    from proxy.policy.fetch import parse_url
    from proxy.policy.keys import ALGORITHMS, HMAC_ALGORITHMS, HMAC_MIN_BYTES

    for i, route in enumerate(config.routes):
        if route.auth is None:
            continue
        at: Path = ("routes", i, "auth", "jwt")
        jwt = route.auth.jwt
        if not jwt.algorithms:
            yield Problem(at + ("algorithms",), "at least one algorithm is needed")
        for j, alg in enumerate(jwt.algorithms):
            if alg.lower() == "none":
                yield Problem(at + ("algorithms", j), '"none" is never accepted: tokens must be signed')
            elif alg not in ALGORITHMS:
                known = ", ".join(sorted(ALGORITHMS))
                yield Problem(at + ("algorithms", j), f"{alg!r} is not one of {known}")
        hmac = [alg for alg in jwt.algorithms if alg in HMAC_ALGORITHMS]
        public = [alg for alg in jwt.algorithms if alg in ALGORITHMS and alg not in HMAC_ALGORITHMS]
        has_public = bool(jwt.public_keys or jwt.jwks_file or jwt.jwks_url)
        if jwt.secret is None and not has_public:
            yield Problem(at, "set a key source: secret, public_keys, jwks_file or jwks_url")
        if jwt.secret is not None:
            if not hmac:
                reason = "a secret verifies HS256/HS384/HS512 only: add one to algorithms"
                yield Problem(at + ("secret",), reason)
            for alg in hmac:
                if len(jwt.secret.encode("utf-8")) < HMAC_MIN_BYTES[alg]:
                    reason = f"{alg} needs a secret of at least {HMAC_MIN_BYTES[alg]} bytes (RFC 7518)"
                    yield Problem(at + ("secret",), reason)
                    break
        elif hmac and jwt.jwks_file is None:
            yield Problem(at + ("algorithms",), f"{', '.join(hmac)} need a secret (or a jwks_file)")
        if public and not has_public:
            reason = f"{', '.join(public)} need public_keys, jwks_file or jwks_url"
            yield Problem(at + ("algorithms",), reason)
        if has_public and not public and jwt.jwks_file is None:
            yield Problem(at + ("algorithms",), "public keys verify RS*/PS*/ES*/EdDSA: add one to algorithms")
        if jwt.jwks_url is not None:
            try:
                parse_url(jwt.jwks_url)
            except ValueError as e:
                yield Problem(at + ("jwks_url",), str(e))
        for field in ("jwks_refresh", "jwks_cooldown", "jwks_timeout"):
            if getattr(jwt, field) <= 0:
                yield Problem(at + (field,), "must be > 0")
        if jwt.leeway < 0:
            yield Problem(at + ("leeway",), "must be >= 0")
        if jwt.cache_size < 0:
            yield Problem(at + ("cache_size",), "must be >= 0 (0 turns the cache off)")
        if jwt.header is not None and jwt.cookie is not None:
            yield Problem(at, "set at most one of header, cookie")
        if jwt.header is not None and not _TOKEN.match(jwt.header):
            yield Problem(at + ("header",), f"{jwt.header!r} is not a valid header name")
        if jwt.cookie is not None and not _TOKEN.match(jwt.cookie):
            yield Problem(at + ("cookie",), f"{jwt.cookie!r} is not a valid cookie name")
        for claim, header in jwt.forward_claims.items():
            if not _TOKEN.match(header):
                yield Problem(at + ("forward_claims", claim), f"{header!r} is not a valid header name")
            elif header.lower() in _POLICY_PROTECTED:
                yield Problem(at + ("forward_claims", claim), f"{header} cannot carry a claim")
        if _BAD_VALUE_CHARS.search(jwt.realm) or '"' in jwt.realm:
            yield Problem(at + ("realm",), "must not contain quotes, CR, LF or NUL")


# Headers a forwarded claim must not replace: framing, and what graylane itself writes.
_POLICY_PROTECTED = frozenset(
    ["connection", "content-length", "transfer-encoding", "host", "te", "trailer", "upgrade", "authorization",
     "cookie", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "traceparent"]
)  # fmt: skip


def check_auth_keys(config: Config) -> Iterator[Problem]:
    """Key files load: PEM public keys or certificates, and a JWKS with at least one usable key."""
    from proxy.policy.keys import KeyLoadError, load_jwks_file, load_pem_file

    for i, route in enumerate(config.routes):
        if route.auth is None:
            continue
        at: Path = ("routes", i, "auth", "jwt")
        jwt = route.auth.jwt
        for j, path in enumerate(jwt.public_keys):
            try:
                load_pem_file(path)
            except KeyLoadError as e:
                yield Problem(at + ("public_keys", j), str(e))
        if jwt.jwks_file is not None:
            try:
                keys, skipped = load_jwks_file(jwt.jwks_file)
            except KeyLoadError as e:
                yield Problem(at + ("jwks_file",), str(e))
                continue
            if not keys:
                detail = f" ({'; '.join(skipped)})" if skipped else ""
                yield Problem(at + ("jwks_file",), "no usable key" + detail)


def check_rate_limits(config: Config) -> Iterator[Problem]:
    from proxy.policy.limits import parse_key

    for i, route in enumerate(config.routes):
        names: dict[str, int] = {}
        for j, limit in enumerate(route.rate_limits):
            at: Path = ("routes", i, "rate_limits", j)
            if not limit.rate > 0:
                yield Problem(at + ("rate",), f"must be > 0, not {limit.rate}")
            if limit.per <= 0:
                yield Problem(at + ("per",), "must be > 0")
            if limit.burst is not None and limit.burst < 1:
                yield Problem(at + ("burst",), f"must be >= 1, not {limit.burst}")
            try:
                kind, name = parse_key(limit.key)
            except ValueError as e:
                yield Problem(at + ("key",), str(e))
            else:
                if kind == "header" and not _TOKEN.match(name):
                    yield Problem(at + ("key",), f"{name!r} is not a valid header name")
                if kind == "claim" and route.auth is None:
                    yield Problem(at + ("key",), "a claim key needs auth.jwt on the route")
            if limit.backend == "redis" and config.redis is None:
                yield Problem(at + ("backend",), "backend redis needs the top-level redis section")
            if limit.on_redis_error == "fail_closed" and limit.backend != "redis":
                yield Problem(at + ("on_redis_error",), "applies to backend redis only")
            name = limit.name if limit.name is not None else f"{route.name}/{j}"
            if limit.name is not None and not _printable_name(limit.name):
                yield Problem(at + ("name",), "must be printable, without quotes, not empty")
            elif name in names:
                yield Problem(at + ("name",), f"{name!r} is already the name of rate_limits[{names[name]}]")
            names.setdefault(name, j)


def _printable_name(name: str) -> bool:
    # It goes into the RateLimit headers as a quoted string.
    return bool(name) and name.isprintable() and name.isascii() and '"' not in name and "\\" not in name


def check_redis(config: Config) -> Iterator[Problem]:
    redis = config.redis
    if redis is None:
        return
    scheme = redis.url.partition("://")[0]
    if scheme not in ("redis", "rediss", "unix") or "://" not in redis.url:
        yield Problem(("redis", "url"), f"{redis.url!r} is not a redis://, rediss:// or unix:// URL")
    for field in ("timeout", "connect_timeout", "retry_interval"):
        if getattr(redis, field) <= 0:
            yield Problem(("redis", field), "must be > 0")
    if redis.max_connections < 1:
        yield Problem(("redis", "max_connections"), "must be >= 1")


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
    check_claim_use,
    check_auth,
    check_auth_keys,
    check_rate_limits,
    check_redis,
    check_rollouts,
    check_rollout_settings,
    check_health,
    check_outlier,
)
