# cython: annotation_typing=False
"""Per-request parsing and lookup for route matching, on bytes.

Theory of operation
-------------------
Path index. Prefix routes are indexed by path segments (Gateway API PathPrefix
semantics: ``/api`` matches ``/api``, ``/api/`` and ``/api/x``, never ``/apix``).
``proxy.routing.pathindex`` builds one dict whose keys are every segment-boundary
prefix of every configured prefix (``/a``, ``/a/b`` for ``/a/b/c`` ...) and whose
values are that node's candidate routes, the routes of the node itself and of every
shorter prefix already merged in, in config order. ``lookup_prefix`` walks the
request path one segment at a time while the prefix so far is a key; the value of
the deepest key found is the answer: O(depth of the configured prefixes), one dict
lookup per segment, independent of the number of routes.

``first_value`` reads one header of the parsed list for the matchers and the sticky key.
The rest splits the request parts that routes may match on (host, cookies, query)
into the shapes the matchers compare; each is called only when a route needs it.

This file is plain Python and is also compiled by Cython as ``_matching_c`` with the
C types declared in ``_matching_c.pxd``; both must return identical results.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def lookup_prefix(nodes: dict, path: bytes, root: object) -> object:
    """The value of the deepest key of ``nodes`` that is a segment-boundary prefix of ``path``.

    ``root`` is returned when there is none (it stands for the prefix ``/``).
    """
    found = root
    end = len(path)
    start = 1  # path[0] is "/" in origin-form; a key never ends before it
    while start <= end:
        cut = path.find(b"/", start)
        if cut < 0:
            cut = end
        value = nodes.get(path[:cut])
        if value is None:
            break
        found = value
        start = cut + 1
    return found


def first_value(headers: list, name: bytes) -> bytes | None:
    """The value of the first ``(name, value)`` pair of ``headers`` whose name is ``name``, else None.

    ``headers`` is a request's parsed header list (lower-case names); a scan, not a dict: a
    request has few headers and routing reads one or two of them.
    """
    for key, value in headers:
        if key == name:
            return value
    return None


def has_path_prefix(path: bytes, prefix: bytes) -> bool:
    """Segment-wise prefix test; ``prefix`` is normalised (no trailing "/" unless it is "/")."""
    if prefix == b"/":
        return True
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or path[len(prefix)] == 47  # 47 = "/"


def normalize_host(host: bytes | None) -> bytes:
    """The Host header reduced to what routes match: lower-case, no port, no trailing dot.

    An IPv6 literal keeps its brackets (``[::1]:8080`` -> ``[::1]``); a missing host is b"".
    """
    if host is None:
        return b""
    if host.startswith(b"["):
        close = host.find(b"]")
        if close > 0:
            host = host[: close + 1]
    else:
        colon = host.rfind(b":")
        if colon >= 0:
            host = host[:colon]
        if host.endswith(b"."):
            host = host[: len(host) - 1]
    return host.lower()


def parse_cookies(header: bytes) -> dict:
    """``name=value`` pairs of a Cookie header (RFC 6265 5.4): the first of a name wins.

    Whitespace around names and values is dropped and one pair of surrounding double
    quotes is removed from a value; pieces without "=" are ignored; nothing is decoded.
    """
    cookies: dict = {}
    for piece in header.split(b";"):
        eq = piece.find(b"=")
        if eq < 0:
            continue
        name = piece[:eq].strip()
        if not name or name in cookies:
            continue
        value = piece[eq + 1 :].strip()
        if len(value) >= 2 and value[0] == 34 and value[len(value) - 1] == 34:  # 34 = '"'
            value = value[1 : len(value) - 1]
        cookies[name] = value
    return cookies


def parse_query(query: bytes) -> dict:
    """Parameters of a query string (``application/x-www-form-urlencoded``): the first of a name wins.

    "+" is a space and percent escapes are decoded in names and values; a parameter
    without "=" has the value b""; empty pieces are skipped.
    """
    params: dict = {}
    for piece in query.split(b"&"):
        if not piece:
            continue
        eq = piece.find(b"=")
        if eq < 0:
            name = piece
            value = b""
        else:
            name = piece[:eq]
            value = piece[eq + 1 :]
        if b"+" in name or b"%" in name:
            name = unquote_to_bytes(name.replace(b"+", b" "))
        if name in params:
            continue
        if b"+" in value or b"%" in value:
            value = unquote_to_bytes(value.replace(b"+", b" "))
        params[name] = value
    return params
