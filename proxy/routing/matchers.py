"""Compile a config ``Match`` into a tuple of checks, each ``check(view) -> bool``.

A request matches when every check passes; the checks are ordered cheapest first
(method, host, path, then headers, query, cookies, labels) so a miss costs little.
Everything that does not depend on the request (lower-casing, encoding, regexes,
the segment form of a prefix) is done here, once.

Semantics:
- host: exact names or "*.suffix" (matches any name ending in ".suffix", at any
  depth, not "suffix" itself); "*" or an empty list matches any host. The request's
  host is compared lower-case, without port and trailing dot.
- path: exact, prefix (segment-wise: "/api" matches "/api", "/api/" and "/api/x" but
  not "/apix"; a trailing "/" in the prefix is ignored), or regex (full match). The
  raw path is compared, not percent-decoded, case-sensitive.
- methods: any of; compared upper-case as sent.
- headers (name case-insensitive), query parameters, cookies (names as written):
  exact, prefix, regex (full match) or present true/false, on the first value.
- labels: the same kinds on the request-metadata labels (strings).
- claims (content rules only): the same kinds on the claims of the route's verified JWT;
  a list claim (e.g. groups) matches when any of its items does.
Regexes on bytes use Python ``re`` bytes semantics (``\\d``, ``\\w`` are ASCII).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from proxy._fast import load
from proxy.config.paths import Path
from proxy.config.schema import Match, PathMatch, StringMatch
from proxy.routing.problems import Problems
from proxy.routing.view import RequestView

_HeaderTest = load("routing").HeaderTest

Check = Callable[[RequestView], bool]
# The same test on a request's header list (RequestHead.headers): ``test(headers)`` or a call.
HeaderCheck = _HeaderTest

_has_path_prefix = load("matching").has_path_prefix

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HOST = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\]")


class Needs:
    """What the per-request path must collect for the compiled matchers (for the data plane)."""

    def __init__(self) -> None:
        self.headers: set[bytes] = set()  # lower-case header names matched or read
        self.labels = False  # some matcher reads request-metadata labels


def is_token(name: str) -> bool:
    return _TOKEN.fullmatch(name) is not None


def normalize_prefix(prefix: str) -> bytes:
    """The index form of a path prefix: bytes, no trailing "/" except for "/" itself."""
    return prefix.encode("utf-8").rstrip(b"/") or b"/"


def path_kind(pm: PathMatch, where: Path, problems: Problems) -> tuple[str, bytes] | None:
    """("exact" | "prefix" | "regex", value) of a PathMatch, or None after adding a problem."""
    kinds = [
        (kind, getattr(pm, kind)) for kind in ("exact", "prefix", "regex") if getattr(pm, kind) is not None
    ]
    if len(kinds) != 1:
        problems.add(where, "set exactly one of exact, prefix, regex")
        return None
    kind, value = kinds[0]
    if kind == "regex":
        if _compile(value.encode("utf-8"), where + ("regex",), problems) is None:
            return None
        return kind, value.encode("utf-8")
    if not value.startswith("/"):
        problems.add(where + (kind,), f"must start with '/': {value!r}")
        return None
    return kind, (normalize_prefix(value) if kind == "prefix" else value.encode("utf-8"))


def compile_match(
    match: Match, where: Path, problems: Problems, needs: Needs, *, path_indexed: bool = False
) -> tuple[tuple[Check, ...], tuple[str, bytes] | None]:
    """The checks for ``match`` and its path condition (``path_kind``'s form, or None).

    ``path_indexed`` leaves out an exact or prefix path check: the path index does it.
    """
    checks: list[Check] = []
    spec = None
    if match.methods:
        checks.append(_method_check(match.methods, where + ("methods",), problems))
    host_check = _host_check(match.host, where + ("host",), problems)
    if host_check is not None:
        checks.append(host_check)
    if match.path is not None:
        spec = path_kind(match.path, where + ("path",), problems)
        if spec is not None and not (path_indexed and spec[0] != "regex"):
            checks.append(_path_check(*spec))
    for name, sm in match.headers.items():
        if not is_token(name):
            problems.add(where + ("headers", name), "not a valid header name")
            continue
        key = name.lower().encode("latin-1")
        needs.headers.add(key)
        _add(checks, _header_check(key, sm, where + ("headers", name), problems))
    for name, sm in match.query.items():
        key = name.encode("utf-8")
        _add(
            checks, _string_check(RequestView.query_param, key, sm, _utf8, where + ("query", name), problems)
        )
    for name, sm in match.cookies.items():
        needs.headers.add(b"cookie")
        key = name.encode("utf-8")
        _add(checks, _string_check(RequestView.cookie, key, sm, _utf8, where + ("cookies", name), problems))
    for name, sm in match.labels.items():
        needs.labels = True
        _add(checks, _string_check(RequestView.label, name, sm, _same, where + ("labels", name), problems))
    for name, sm in match.claims.items():
        _add(checks, _claim_check(name, sm, where + ("claims", name), problems))
    return tuple(checks), spec


def matches(checks: tuple[Check, ...], view: RequestView) -> bool:
    # A plain loop: all() over a generator costs a frame per request.
    for check in checks:  # noqa: SIM110
        if not check(view):
            return False
    return True


# --- the kinds of check --------------------------------------------------------------


def _utf8(text: str) -> bytes:
    return text.encode("utf-8")


def _same(text: str) -> str:
    return text


def _add(checks: list[Check], check: Check | None) -> None:
    if check is not None:
        checks.append(check)


def _compile(pattern: bytes | str, where: Path, problems: Problems) -> re.Pattern | None:
    try:
        return re.compile(pattern)
    except re.error as exc:
        problems.add(where, f"invalid regex: {exc}")
        return None


def _method_check(methods: list[str], where: Path, problems: Problems) -> Check:
    for i, method in enumerate(methods):
        if not is_token(method):
            problems.add(where + (i,), f"not a valid method: {method!r}")
    allowed = frozenset(method.upper().encode("latin-1", "replace") for method in methods)

    def check(view: RequestView) -> bool:
        return view.req.method in allowed

    return check


def _host_check(hosts: list[str], where: Path, problems: Problems) -> Check | None:
    exact: set[bytes] = set()
    suffixes: list[bytes] = []
    for i, host in enumerate(hosts):
        name = host.lower().rstrip(".")
        if name == "*":
            return None  # any host
        if _HOST.fullmatch(name) is None:
            problems.add(where + (i,), f"not a host name or '*.suffix' (no port): {host!r}")
        elif name.startswith("*."):
            suffixes.append(name[1:].encode("ascii"))
        else:
            exact.add(name.encode("ascii"))
    if not exact and not suffixes:
        return None
    names = frozenset(exact)
    ends = tuple(suffixes)

    def check(view: RequestView) -> bool:
        # Most clients send the name as configured: then it is already normalised.
        if view.req.host in names:
            return True
        host = view.host()
        return host in names or host.endswith(ends)

    return check


def _path_check(kind: str, value: bytes) -> Check:
    if kind == "exact":

        def check(view: RequestView) -> bool:
            return view.req.path == value

    elif kind == "prefix":

        def check(view: RequestView) -> bool:
            return _has_path_prefix(view.req.path, value)

    else:
        fullmatch = re.compile(value).fullmatch

        def check(view: RequestView) -> bool:
            return fullmatch(view.req.path) is not None

    return check


def _string_test(
    sm: StringMatch, encode: Callable, where: Path, problems: Problems
) -> tuple[str, object] | None:
    """(kind, operand) of a StringMatch: ("exact" | "prefix", value), ("regex", fullmatch),
    ("present" | "absent", None); None after adding a problem."""
    kinds = [kind for kind in ("exact", "prefix", "regex", "present") if getattr(sm, kind) is not None]
    if len(kinds) != 1:
        problems.add(where, "set exactly one of exact, prefix, regex, present")
        return None
    if sm.exact is not None:
        return "exact", encode(sm.exact)
    if sm.prefix is not None:
        return "prefix", encode(sm.prefix)
    if sm.regex is not None:
        pattern = _compile(encode(sm.regex), where + ("regex",), problems)
        return None if pattern is None else ("regex", pattern.fullmatch)
    return ("present" if sm.present else "absent"), None


def _string_check(
    fetch: Callable, key: object, sm: StringMatch, encode: Callable, where: Path, problems: Problems
) -> Check | None:
    """A check on the value ``fetch(view, key)`` (None when absent) against ``sm``."""
    test = _string_test(sm, encode, where, problems)
    return None if test is None else _value_check(fetch, key, *test)


def _header_check(key: bytes, sm: StringMatch, where: Path, problems: Problems) -> Check | None:
    """A check on the first value of header ``key``; its ``on_headers`` attribute is the same
    test on the request's header list, for callers that need nothing else from the request."""
    test = _string_test(sm, _utf8, where, problems)
    if test is None:
        return None
    check = _value_check(RequestView.header, key, *test)
    # As data, not a closure: the compiled VersionChoice runs it in C (proxy._fast.routing).
    check.on_headers = _HeaderTest(key, *test)  # type: ignore[attr-defined]
    return check


def _value_check(fetch: Callable, key: object, kind: str, operand: object) -> Check:
    """``check(x) -> bool`` testing ``fetch(x, key)`` (None when absent) as ``_string_test`` says."""
    if kind == "exact":
        want = operand

        def check(view: RequestView) -> bool:
            return fetch(view, key) == want

    elif kind == "prefix":
        start = operand

        def check(view: RequestView) -> bool:
            value = fetch(view, key)
            return value is not None and value.startswith(start)

    elif kind == "regex":
        fullmatch = operand

        def check(view: RequestView) -> bool:
            value = fetch(view, key)
            return value is not None and fullmatch(value) is not None

    elif kind == "present":

        def check(view: RequestView) -> bool:
            return fetch(view, key) is not None

    else:

        def check(view: RequestView) -> bool:
            return fetch(view, key) is None

    return check


def header_checks(checks: tuple[Check, ...]) -> tuple[HeaderCheck, ...] | None:
    """The header-list form of ``checks`` when every one of them reads request headers only, else None."""
    found = tuple(getattr(check, "on_headers", None) for check in checks)
    return None if None in found else found  # type: ignore[return-value]


def _claim_check(name: str, sm: StringMatch, where: Path, problems: Problems) -> Check | None:
    """A check on a JWT claim: a string, or a tuple of strings (any item may match)."""
    test = _string_test(sm, str, where, problems)  # claims are strings: nothing to encode
    if test is None:
        return None
    kind, operand = test
    claim = RequestView.claim
    if kind == "exact":
        want = operand

        def check(view: RequestView) -> bool:
            value = claim(view, name)
            return value == want or (type(value) is tuple and want in value)

    elif kind == "prefix":
        start = operand

        def check(view: RequestView) -> bool:
            value = claim(view, name)
            if type(value) is tuple:
                return any(item.startswith(start) for item in value)
            return value is not None and value.startswith(start)

    elif kind == "regex":
        fullmatch = operand

        def check(view: RequestView) -> bool:
            value = claim(view, name)
            if type(value) is tuple:
                return any(fullmatch(item) is not None for item in value)
            return value is not None and fullmatch(value) is not None

    elif kind == "present":

        def check(view: RequestView) -> bool:
            return claim(view, name) is not None

    else:

        def check(view: RequestView) -> bool:
            return claim(view, name) is None

    return check
