"""Sticky keys: what identifies a user for the weighted split, and its salted hash.

A route with ``sticky`` hashes one key per request (a header, a cookie, the client
address, or a claim of the route's verified JWT) with ``stable_hash(salt, key)``;
``hash % 10000`` is the user's bucket, the same in every worker and replica (see
``choice`` for how buckets map to versions). The salt defaults to the route's name,
so one user lands in independent buckets on different routes; routes that must agree
on a user can share a salt. An absent or empty key gives no bucket: that request is
split at random.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy._fast import load
from proxy.config.paths import Path
from proxy.config.schema import Sticky
from proxy.routing.matchers import Needs, is_token
from proxy.routing.problems import Problems
from proxy.routing.view import RequestView

_hashing = load("hashing")
_first_value = load("matching").first_value

KeyFetch = Callable[[RequestView], "bytes | None"]


class StickyKey:
    __slots__ = ("source", "fetch", "state", "hash_key", "header")

    def __init__(self, source: str, fetch: KeyFetch, salt: bytes, header: bytes | None = None) -> None:
        self.source = source  # "header X-User-ID", "cookie uid", "client_ip" or "claim sub", for humans
        self.fetch = fetch  # view -> key bytes, None (or b"") when the request has none
        # The lower-case header name when the key is the first value of that header (``fetch``
        # then reads nothing else, and ``first_value(req.headers, header)`` gives the same key).
        self.header = header
        self.state = _hashing.salted_state(salt)  # FNV state after salt + b"\0"
        self.hash_key = _hashing.hash_key  # (state, key) -> 64-bit hash

    def hash_of(self, view: RequestView) -> int:
        """The request's sticky hash, or -1 when it carries no key."""
        key = self.fetch(view)
        if not key:
            return -1
        return self.hash_key(self.state, key)


def compile_sticky(
    sticky: Sticky, route_name: str, where: Path, problems: Problems, needs: Needs
) -> StickyKey | None:
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
        problems.add(where, "set exactly one of header, cookie, client_ip, claim")
        return None
    salt = (sticky.salt if sticky.salt is not None else route_name).encode("utf-8")
    if sticky.header is not None:
        if not is_token(sticky.header):
            problems.add(where + ("header",), f"not a valid header name: {sticky.header!r}")
            return None
        name = sticky.header.lower().encode("latin-1")
        needs.headers.add(name)

        def fetch(view: RequestView) -> bytes | None:
            return _first_value(view.req.headers, name)  # RequestView.header without its method call

        return StickyKey(f"header {sticky.header}", fetch, salt, name)
    if sticky.cookie is not None:
        cookie = sticky.cookie.encode("utf-8")
        needs.headers.add(b"cookie")

        def fetch(view: RequestView) -> bytes | None:
            return view.cookie(cookie)

        return StickyKey(f"cookie {sticky.cookie}", fetch, salt)
    if sticky.claim is not None:
        name = sticky.claim

        def fetch(view: RequestView) -> bytes | None:
            claims = view.claims
            value = None if claims is None else claims.get(name)
            if value is None:
                return None
            return (",".join(value) if type(value) is tuple else value).encode("utf-8")

        return StickyKey(f"claim {sticky.claim}", fetch, salt)

    def fetch(view: RequestView) -> bytes | None:
        return view.client_ip.encode("latin-1")

    return StickyKey("client_ip", fetch, salt)
