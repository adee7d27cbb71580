"""Where a route finds its token: ``Authorization: Bearer``, a named header, or a cookie.

A fetch returns the token bytes, ``None`` when the request carries none, or ``b""``
when it carries something that cannot be a token (an empty bearer, two Authorization
headers): the first is a 401 without an error code, the second a 401 ``invalid_request``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy._fast import load

if TYPE_CHECKING:
    from proxy.http.request import RequestHead

_parse_cookies = load("matching").parse_cookies

TokenFetch = Callable[["RequestHead"], "bytes | None"]

MALFORMED = b""


def _strip_bearer(value: bytes) -> bytes:
    """The token of ``Bearer TOKEN`` (scheme case-insensitive); b"" when only the scheme is there."""
    return value[7:].strip() if len(value) > 7 else MALFORMED


def bearer(req: RequestHead) -> bytes | None:
    """The token of the ``Authorization: Bearer`` header."""
    value = None
    for key, found in req.headers:
        if key == b"authorization":
            if value is not None:
                return MALFORMED  # RFC 6750 3.1: more than one way of sending a token
            value = found
    if value is None:
        return None
    if value.startswith(b"Bearer "):  # as nearly every client writes it
        return value[7:].strip() or MALFORMED
    scheme = value[:7].lower()
    if scheme == b"bearer " or scheme == b"bearer\t":
        return _strip_bearer(value)
    if scheme == b"bearer":
        return MALFORMED
    return None  # another scheme (Basic...): no bearer token


def header_source(name: str) -> TokenFetch:
    """The token in header ``name`` (an optional ``Bearer `` prefix is removed)."""
    key = name.lower().encode("latin-1")

    def fetch(req: RequestHead) -> bytes | None:
        for found, value in req.headers:
            if found == key:
                if value[:7].lower() == b"bearer ":
                    return _strip_bearer(value)
                return value
        return None

    return fetch


def cookie_source(name: str) -> TokenFetch:
    """The token in cookie ``name``."""
    key = name.encode("utf-8")

    def fetch(req: RequestHead) -> bytes | None:
        values = [value for found, value in req.headers if found == b"cookie"]
        if not values:
            return None
        return _parse_cookies(b"; ".join(values)).get(key)

    return fetch


def token_source(header: str | None, cookie: str | None) -> tuple[TokenFetch, str, bytes | None]:
    """(fetch, description, lower-case name of the header carrying the token or None for a cookie)."""
    if cookie is not None:
        return cookie_source(cookie), f"cookie {cookie}", None
    if header is not None and header.lower() != "authorization":
        return header_source(header), f"header {header}", header.lower().encode("latin-1")
    return bearer, "Authorization: Bearer", b"authorization"
