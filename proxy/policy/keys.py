"""Verification keys for JWTs: a shared secret, PEM files, a JWKS file, a JWKS URL.

Theory of operation
-------------------
Every key is a ``VerifyKey`` bound to the algorithms of its own kind, fixed when it
is loaded: a secret verifies HS256/384/512 only, an RSA key RS*/PS*, an EC key the
ES* of its curve, an Ed25519/Ed448 key EdDSA. A token's ``alg`` must be allowed by
the route *and* by the key, so a public key can never be used as an HMAC secret
(the RS/HS confusion) and ``none`` never verifies anything.

A ``KeySet`` finds candidates for a token: keys with its ``kid``; keys without a
kid (a secret, a PEM file) for any kid; every key of the algorithm's kind when the
token has no kid.

``RemoteJwks`` keeps the keys of a JWKS URL: fetched at start and every ``refresh``
in a background task, and on demand when a token names an unknown ``kid`` -- at most
one such fetch per ``cooldown``, so a flood of made-up kids costs the identity provider
one request per cooldown, not one per token. Concurrent demands share one fetch. A
failed fetch keeps the keys already known (stale keys are served while the provider
is down), is retried with back-off, and is logged once per outage. ``generation``
changes whenever the key set does, so caches of verified tokens can be dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from proxy.policy.fetch import FetchError, fetch_url

log = logging.getLogger("graylane")

HMAC_ALGORITHMS = frozenset(["HS256", "HS384", "HS512"])
RSA_ALGORITHMS = frozenset(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
EDDSA_ALGORITHMS = frozenset(["EdDSA"])
ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_ALGORITHMS.values()) | EDDSA_ALGORITHMS
# RFC 7518 3.2: an HMAC key at least as long as the hash output.
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MAX_CANDIDATES = 8  # keys tried for one token without a kid
MAX_JWKS_BYTES = 1 << 20


class KeyLoadError(ValueError):
    """A key that cannot be loaded; the message says which and why."""


class VerifyKey:
    __slots__ = ("kid", "key", "algorithms", "origin")

    def __init__(self, kid: str | None, key: object, algorithms: frozenset[str], origin: str) -> None:
        self.kid = kid
        self.key = key  # bytes (HMAC) or a cryptography public key
        self.algorithms = algorithms  # what this key may verify
        self.origin = origin  # for humans: "secret", "keys/rs.pem", "https://idp/jwks.json#kid"

    def __repr__(self) -> str:
        return f"VerifyKey({self.origin}, {sorted(self.algorithms)})"


def algorithms_of(key: object) -> frozenset[str]:
    """The algorithms a key of this kind can verify (empty for an unsupported kind)."""
    if isinstance(key, bytes):
        return HMAC_ALGORITHMS
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = EC_ALGORITHMS.get(key.curve.name)
        return frozenset([alg]) if alg else frozenset()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return EDDSA_ALGORITHMS
    return frozenset()


def secret_key(secret: str) -> VerifyKey:
    return VerifyKey(None, secret.encode("utf-8"), HMAC_ALGORITHMS, "secret")


def load_pem(data: bytes, origin: str) -> VerifyKey:
    """A public key or certificate in PEM; a private key is refused (the proxy only verifies)."""
    if b"PRIVATE KEY" in data:
        raise KeyLoadError(f"{origin}: a private key; give graylane the public key (or a certificate)")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise KeyLoadError(f"{origin}: not a PEM public key or certificate ({exc})") from None
    algorithms = algorithms_of(key)
    if not algorithms:
        raise KeyLoadError(f"{origin}: unsupported key type {type(key).__name__}")
    return VerifyKey(None, key, algorithms, origin)


def load_pem_file(path: str) -> VerifyKey:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise KeyLoadError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    return load_pem(data, path)


def parse_jwks(data: bytes, origin: str, *, allow_secrets: bool) -> tuple[list[VerifyKey], list[str]]:
    """(usable keys, problems) of a JWKS document. Keys that cannot be used are skipped and named.

    ``allow_secrets``: symmetric ("oct") keys are taken (a local file); from a URL they are skipped.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise KeyLoadError(f"{origin}: not JSON ({exc})") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise KeyLoadError(f'{origin}: not a JWKS (no "keys" list)')
    keys: list[VerifyKey] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        where = f"{origin}: keys[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: not an object")
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            problems.append(f"{where}: kid is not a string")
            continue
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key
        if entry.get("kty") == "oct" and not allow_secrets:
            problems.append(f"{where}: a symmetric key in a JWKS URL is ignored")
            continue
        try:
            parsed = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        key = parsed.key
        if isinstance(key, str):
            key = key.encode("utf-8")
        algorithms = algorithms_of(key)
        declared = entry.get("alg")
        if declared is not None:
            # A key that names its algorithm verifies only that one.
            algorithms = algorithms & {declared}
        if not algorithms:
            problems.append(f"{where}: no usable algorithm for this key (alg {declared!r})")
            continue
        keys.append(VerifyKey(kid, key, frozenset(algorithms), f"{origin}#{kid}" if kid else origin))
    return keys, problems


def load_jwks_file(path: str) -> tuple[list[VerifyKey], list[str]]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise KeyLoadError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_JWKS_BYTES:
        raise KeyLoadError(f"{path}: larger than {MAX_JWKS_BYTES} bytes")
    return parse_jwks(data, path, allow_secrets=True)


class KeySet:
    """Keys by kid, and the keys without one."""

    __slots__ = ("by_kid", "unnamed", "keys")

    def __init__(self, keys: Iterable[VerifyKey] = ()) -> None:
        self.keys = tuple(keys)
        self.by_kid: dict[str, tuple[VerifyKey, ...]] = {}
        for key in self.keys:
            if key.kid is not None:
                self.by_kid[key.kid] = self.by_kid.get(key.kid, ()) + (key,)
        self.unnamed = tuple(key for key in self.keys if key.kid is None)

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, kid: str | None, alg: str) -> list[VerifyKey]:
        """The keys to try for a token with this kid and alg, in order."""
        if kid is not None:
            named = self.by_kid.get(kid, ())
            return [key for key in named + self.unnamed if alg in key.algorithms]
        return [key for key in self.keys if alg in key.algorithms][:MAX_CANDIDATES]


Fetch = Callable[..., Awaitable[bytes]]


class RemoteJwks:
    """The keys of one JWKS URL, kept fresh in the background (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        *,
        refresh: float = 300.0,
        cooldown: float = 30.0,
        timeout: float = 5.0,
        fetch: Fetch = fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.refresh_interval = refresh
        self.cooldown = cooldown
        self.timeout = timeout
        self._fetch = fetch
        self._clock = clock
        self.keys = KeySet()
        self.generation = 0  # changes whenever ``keys`` does
        self.fetched = False  # a fetch has succeeded at least once
        self.down = False  # the last fetch failed
        self.last_error = ""
        # counters
        self.fetches = 0
        self.failures = 0
        self.kid_fetches = 0  # fetches asked for by an unknown kid
        self.kid_refused = 0  # unknown kids that found the cooldown running
        self._body = b""
        self._last_kid_fetch = -math.inf
        self._inflight: asyncio.Task[bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed_in_row = 0

    def __repr__(self) -> str:
        return f"RemoteJwks({self.url}, {len(self.keys)} keys, generation {self.generation})"

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Fetch now and then every ``refresh`` (needs a running loop); idempotent."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        for task in (self._task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = self._inflight = None

    async def _run(self) -> None:
        while True:
            ok = await self.refresh()
            if ok:
                delay = self.refresh_interval
            else:
                # 1s, 2s, 4s ... while the provider is down, at most the refresh period or a minute.
                delay = min(2.0 ** (self._failed_in_row - 1), self.refresh_interval, 60.0)
            await asyncio.sleep(delay)

    # --- fetching ----------------------------------------------------------------------

    def refresh(self) -> asyncio.Task[bool]:
        """Fetch now, or join the fetch under way; the task's result says whether it succeeded."""
        task = self._inflight
        if task is None:
            task = self._inflight = asyncio.get_running_loop().create_task(self._fetch_once())
        return task

    def on_unknown_kid(self) -> asyncio.Task[bool] | None:
        """A token names a kid we do not have: the fetch that may bring it, or None (cooldown)."""
        task = self._inflight
        if task is not None:
            return task
        now = self._clock()
        if now - self._last_kid_fetch < self.cooldown:
            self.kid_refused += 1
            return None
        self._last_kid_fetch = now
        self.kid_fetches += 1
        return self.refresh()

    async def _fetch_once(self) -> bool:
        self.fetches += 1
        try:
            try:
                body = await self._fetch(self.url, timeout=self.timeout, max_bytes=MAX_JWKS_BYTES)
                if body != self._body:
                    keys, problems = parse_jwks(body, self.url, allow_secrets=False)
                    if not keys:
                        raise KeyLoadError(f"no usable key ({'; '.join(problems) or 'empty'})")
                    for problem in problems:
                        log.warning("JWKS %s", problem)
                    self.keys = KeySet(keys)
                    self.generation += 1
                    self._body = body
            except (FetchError, KeyLoadError) as exc:
                self._failed(str(exc))
                return False
            self._succeeded()
            return True
        finally:
            self._inflight = None

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self._failed_in_row += 1
        self.last_error = reason
        if not self.down:
            self.down = True
            if self.fetched:
                log.warning(
                    "JWKS %s unavailable (%s): serving the %d keys fetched before until it is back",
                    self.url,
                    reason,
                    len(self.keys),
                )
            else:
                log.warning("JWKS %s unavailable (%s): tokens cannot be verified yet", self.url, reason)

    def _succeeded(self) -> None:
        if self.down:
            log.info("JWKS %s reachable again (%d keys)", self.url, len(self.keys))
        self.down = False
        self.fetched = True
        self._failed_in_row = 0
        self.last_error = ""


class KeyRegistry:
    """The JWKS URLs in use, one ``RemoteJwks`` each, kept across reloads (keys and cooldowns survive)."""

    def __init__(self, fetch: Fetch = fetch_url) -> None:
        self._fetch = fetch
        self.remotes: dict[str, RemoteJwks] = {}

    def get(self, url: str, *, refresh: float, cooldown: float, timeout: float) -> RemoteJwks:
        remote = self.remotes.get(url)
        if remote is None:
            remote = self.remotes[url] = RemoteJwks(
                url, refresh=refresh, cooldown=cooldown, timeout=timeout, fetch=self._fetch
            )
        else:  # the newest config's settings apply
            remote.refresh_interval = refresh
            remote.cooldown = cooldown
            remote.timeout = timeout
        return remote

    def start(self) -> None:
        for remote in self.remotes.values():
            remote.start()

    async def retain(self, urls: Iterable[str]) -> None:
        """Stop and forget the URLs no longer used (after a reload)."""
        keep = set(urls)
        for url in [url for url in self.remotes if url not in keep]:
            await self.remotes.pop(url).close()

    async def close(self) -> None:
        await self.retain(())
