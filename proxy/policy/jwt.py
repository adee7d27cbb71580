"""JWT authentication of one route: ``JwtAuth.verify(req) -> Identity | None``.

Theory of operation
-------------------
A request's token (``proxy.policy.tokens``) is looked up in a cache of verified
tokens first: a hit that has not expired returns its ``Identity`` at the cost of a
header scan and a dict lookup. A miss verifies with pyjwt:

1. the unverified header gives ``alg`` and ``kid``; ``alg`` must be one the route
   allows (never ``none``);
2. the candidate keys (``KeySet.candidates``) must also allow ``alg``: keys are bound
   to their own kind, so an RSA public key is never tried as an HMAC secret;
3. the signature, then ``exp``/``nbf``/``iat`` (with ``leeway``), ``iss``, ``aud`` and the
   required claims are checked (``exp`` is required unless ``require_exp: false``);
4. the claims are flattened once for routing (``route_claims``: strings, or tuples of
   strings for lists; nested objects as ``a.b``) and the forwarded claim headers are
   serialised once; the Identity is cached until ``exp`` (+ leeway), an hour at most.

Failures raise ``Unauthorized`` whose ``reason`` is one of ``REASONS`` (counted per
reason) and whose ``headers`` is the ``WWW-Authenticate`` line. Failures that cannot
change for the same token (a bad signature, an expired token...) are remembered for a
few seconds, so a client repeating a bad token costs no more than a good one.

A token naming a kid no key has, on a route with a JWKS URL, may start a fetch of
the JWKS (subject to its cooldown). ``KeysPending`` (an ``Unauthorized``) then says
so: answering it as a 401 is correct; a data plane that can wait calls
``pending.wait(callback)`` and verifies again (with ``may_wait=False``) when the
fetch is over. When the key set changes, both caches are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jwt

from proxy.config.schema import Jwt
from proxy.errors import Unauthorized
from proxy.policy.headers import www_authenticate
from proxy.policy.keys import (
    KeyRegistry,
    KeySet,
    RemoteJwks,
    VerifyKey,
    load_jwks_file,
    load_pem_file,
    secret_key,
)
from proxy.policy.tokens import token_source

if TYPE_CHECKING:
    from proxy.http.request import RequestHead

# reason -> (RFC 6750 error code or None, description); the reason itself is the short
# code in logs, counters and the JSON body.
REASONS: dict[str, tuple[str | None, str]] = {
    "missing": (None, ""),
    "malformed": ("invalid_token", "malformed token"),
    "bad_algorithm": ("invalid_token", "algorithm not allowed"),
    "unknown_kid": ("invalid_token", "unknown signing key"),
    "no_keys": ("invalid_token", "signing keys unavailable"),
    "bad_signature": ("invalid_token", "bad signature"),
    "expired": ("invalid_token", "token expired"),
    "not_yet_valid": ("invalid_token", "token not yet valid"),
    "bad_issuer": ("invalid_token", "wrong issuer"),
    "bad_audience": ("invalid_token", "wrong audience"),
    "missing_claim": ("invalid_token", "a required claim is missing"),
    "bad_claim": ("invalid_token", "invalid claim"),
}
# Failures that stay failures for the same token (whatever the keys): remembered briefly.
_REMEMBERED = frozenset(
    ["malformed", "bad_algorithm", "bad_signature", "expired", "bad_issuer", "bad_audience", "missing_claim",
     "bad_claim"]
)  # fmt: skip
FAILURE_TTL = 10.0
MAX_FAILURES_KEPT = 4096
MAX_CACHE_TTL = 3600.0  # a verified token is verified again at least this often
NO_EXP_TTL = 300.0  # ... and this often when it has no exp
_CONTROL = bytes(range(0, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"


class AuthCounters:
    """Process-wide authentication counters (they outlive reloads)."""

    __slots__ = ("verified", "cache_hits", "failures", "headers_dropped")

    def __init__(self) -> None:
        self.verified = 0  # tokens verified with a signature check
        self.cache_hits = 0  # requests answered from the cache of verified tokens
        self.failures = dict.fromkeys(REASONS, 0)  # 401s by reason
        self.headers_dropped = 0  # claims not forwarded: a control character in the value


class Identity:
    """A verified token: what routing, rate limits and the upstream request use."""

    __slots__ = ("claims", "route_claims", "headers", "expires")

    def __init__(self, claims: dict[str, Any], route_claims: dict[str, Any], headers: bytes, expires: float):
        self.claims = claims  # the payload as decoded
        self.route_claims = route_claims  # flattened: str | tuple[str, ...] values (see flatten_claims)
        self.headers = headers  # b"X-User-ID: alice\r\n"...: append to the upstream request head
        self.expires = expires  # time.time() after which the token is verified again

    def __repr__(self) -> str:
        return f"Identity({self.route_claims!r})"


class KeysPending(Unauthorized):
    """The token's kid is unknown and a JWKS fetch that may bring it is under way."""

    def __init__(self, task: Any, headers: bytes) -> None:
        super().__init__("unknown_kid", headers)
        self._task = task

    def wait(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the loop) once the fetch is over, whatever its outcome."""
        self._task.add_done_callback(lambda _task: callback())


def flatten_claims(claims: dict[str, Any], prefix: str = "", depth: int = 0, out: dict | None = None) -> dict:
    """Claims as routing sees them: strings stay, numbers and booleans become their JSON text,
    lists become tuples of such strings, objects are flattened as ``parent.child`` (3 levels)."""
    if out is None:
        out = {}
    for name, value in claims.items():
        key = prefix + str(name)
        if isinstance(value, dict):
            if depth < 2:
                flatten_claims(value, key + ".", depth + 1, out)
        elif isinstance(value, list):
            out[key] = tuple(text for text in map(_scalar, value) if text is not None)
        else:
            text = _scalar(value)
            if text is not None:
                out[key] = text
    return out


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return repr(value)
    return None


class JwtAuth:
    """The compiled ``auth.jwt`` of one route."""

    __slots__ = (
        "allowed",
        "allow_missing",
        "source",
        "token_header",
        "static",
        "remote",
        "counters",
        "forward",
        "realm",
        "_clock",
        "_fetch",
        "_cache",
        "_cache_size",
        "_failures",
        "_generation",
        "_www",
        "_decode",
        "_decode_args",
        "_leeway",
    )

    def __init__(
        self,
        spec: Jwt,
        static: KeySet,
        remote: RemoteJwks | None,
        counters: AuthCounters,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allowed = frozenset(spec.algorithms) - {"none"}
        self.allow_missing = spec.allow_missing
        self._fetch, self.source, self.token_header = token_source(spec.header, spec.cookie)
        self.static = static
        self.remote = remote
        self.counters = counters
        self.realm = spec.realm
        # (claim, b"Header-Name: ") pairs, in config order
        self.forward = tuple(
            (claim, header.encode("latin-1") + b": ") for claim, header in spec.forward_claims.items()
        )
        self._clock = clock
        self._cache: dict[bytes, Identity] = {}
        self._cache_size = spec.cache_size
        self._failures: dict[bytes, tuple[float, str]] = {}
        self._generation = remote.generation if remote is not None else 0
        self._www = {
            reason: www_authenticate(spec.realm, error, description or None)
            for reason, (error, description) in REASONS.items()
        }
        self._leeway = float(spec.leeway)
        required = list(spec.required_claims)
        if spec.require_exp and "exp" not in required:
            # A token that never expires is a standing credential (and would be cached as one).
            required.append("exp")
        options = {"verify_aud": bool(spec.audiences), "require": required}
        self._decode = jwt.PyJWT(options=options).decode
        self._decode_args = {
            "audience": list(spec.audiences) or None,
            "issuer": list(spec.issuers) or None,
            "leeway": self._leeway,
        }

    # --- per request -------------------------------------------------------------------

    def verify(self, req: RequestHead, may_wait: bool = True) -> Identity | None:
        """The request's Identity; None when it has no token and the route allows that.

        Raises Unauthorized (KeysPending when waiting for a JWKS fetch may help).
        """
        token = self._fetch(req)
        if not token:
            if token is None:
                if self.allow_missing:
                    return None
                self._fail("missing")
            self._fail("malformed")
        remote = self.remote
        if remote is not None and remote.generation != self._generation:
            self._cache.clear()
            self._failures.clear()
            self._generation = remote.generation
        identity = self._cache.get(token)
        if identity is not None:
            if identity.expires > self._clock():
                self.counters.cache_hits += 1
                return identity
            del self._cache[token]
        failed = self._failures.get(token)
        if failed is not None:
            if failed[0] > self._clock():
                self._fail(failed[1])
            del self._failures[token]
        return self._verify_new(token, may_wait)

    def _fail(self, reason: str, token: bytes | None = None) -> None:
        self.counters.failures[reason] += 1
        if token is not None and reason in _REMEMBERED:
            failures = self._failures
            if len(failures) >= MAX_FAILURES_KEPT:
                del failures[next(iter(failures))]
            failures[token] = (self._clock() + FAILURE_TTL, reason)
        raise Unauthorized(reason, self._www[reason])

    def _verify_new(self, token: bytes, may_wait: bool) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            self._fail("malformed", token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.allowed:
            self._fail("bad_algorithm", token)
        kid = header.get("kid")
        keys = self._candidates(kid, alg)
        if not keys:
            self._no_key(kid, alg, token, may_wait)
        reason = "bad_signature"
        for key in keys:
            try:
                claims = self._decode(token, key.key, algorithms=[alg], **self._decode_args)
            except jwt.InvalidSignatureError:
                continue  # maybe another candidate's
            except jwt.InvalidTokenError as exc:
                reason = _reason_of(exc)
                break
            except jwt.InvalidKeyError:
                continue
            self.counters.verified += 1
            return self._remember(token, claims)
        self._fail(reason, token)
        raise AssertionError("unreachable")  # for type checkers: _fail always raises

    def _candidates(self, kid: str | None, alg: str) -> list[VerifyKey]:
        keys = self.static.candidates(kid, alg)
        remote = self.remote
        if remote is not None:
            keys += remote.keys.candidates(kid, alg)
        return keys

    def _no_key(self, kid: str | None, alg: str, token: bytes, may_wait: bool) -> None:
        remote = self.remote
        known = kid in self.static.by_kid or (remote is not None and kid in remote.keys.by_kid)
        if kid is not None and known:
            self._fail("bad_algorithm", token)  # the key exists but is of another kind
        if remote is None:
            self._fail("unknown_kid" if kid is not None else "bad_algorithm")
        if may_wait:
            task = remote.on_unknown_kid()
            if task is not None:
                raise KeysPending(task, self._www["unknown_kid"])
        self._fail("unknown_kid" if remote.fetched or self.static.keys else "no_keys")

    def _remember(self, token: bytes, claims: dict[str, Any]) -> Identity:
        now = self._clock()
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            expires = min(float(exp) + self._leeway, now + MAX_CACHE_TTL)
        else:
            expires = now + NO_EXP_TTL
        route_claims = flatten_claims(claims)
        identity = Identity(claims, route_claims, self._claim_headers(route_claims), expires)
        size = self._cache_size
        if size > 0:
            cache = self._cache
            if len(cache) >= size:
                del cache[next(iter(cache))]  # the oldest entry
            cache[token] = identity
        return identity

    def _claim_headers(self, route_claims: dict[str, Any]) -> bytes:
        lines = []
        for claim, prefix in self.forward:
            value = route_claims.get(claim)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            raw = value.encode("utf-8")
            if raw.translate(None, _CONTROL) != raw:
                self.counters.headers_dropped += 1  # a CR/LF would split the request head
                continue
            lines.append(prefix + raw + b"\r\n")
        return b"".join(lines)


def _reason_of(exc: jwt.InvalidTokenError) -> str:
    # Most specific first: several of these subclass DecodeError or each other.
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not_yet_valid"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "bad_issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "bad_audience"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return "missing_claim"
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return "bad_algorithm"
    if isinstance(exc, jwt.DecodeError):
        return "malformed"
    return "bad_claim"  # iat in the future, a sub or jti of the wrong type...


def load_static_keys(spec: Jwt) -> tuple[KeySet, list[str]]:
    """(the keys of the secret, PEM files and JWKS file, problems); KeyLoadError if one cannot load."""
    keys: list[VerifyKey] = []
    problems: list[str] = []
    if spec.secret is not None:
        keys.append(secret_key(spec.secret))
    for path in spec.public_keys:
        keys.append(load_pem_file(path))
    if spec.jwks_file is not None:
        found, problems = load_jwks_file(spec.jwks_file)
        keys += found
    return KeySet(keys), problems


def build_jwt_auth(
    spec: Jwt, registry: KeyRegistry, counters: AuthCounters, clock: Callable[[], float] = time.time
) -> JwtAuth:
    """A JwtAuth for ``spec``; raises KeyLoadError when a key file cannot be used."""
    static, _ = load_static_keys(spec)
    remote = None
    if spec.jwks_url is not None:
        remote = registry.get(
            spec.jwks_url, refresh=spec.jwks_refresh, cooldown=spec.jwks_cooldown, timeout=spec.jwks_timeout
        )
    return JwtAuth(spec, static, remote, counters, clock)
