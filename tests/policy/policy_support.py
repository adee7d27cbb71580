"""Helpers of the policy tests: keys and tokens, request heads, configs, a real redis-server,
and a tiny HTTP server for JWKS documents (run inside the test's own event loop).

Everything here is imported by name (``from policy_support import ...``); the fixtures that
use it are in this directory's conftest.

``DocumentServer`` answers every request with ``raw()``: the bytes of a whole response,
or None to hang (never answer). ``JwksServer`` builds those bytes from a JWKS document
the test changes, and can be switched ``down`` (503). Both count the requests they got.
``RedisServer`` runs /usr/bin/redis-server on a free loopback port, without persistence,
stopped by its PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from proxy._fast import load
from proxy.config.convert import convert
from proxy.config.paths import format_path
from proxy.config.schema import Config, Jwt
from proxy.config.units import dec_hook
from proxy.config.validate import validate
from proxy.testing import free_port

REDIS_SERVER = "/usr/bin/redis-server"
SECRET = "a-test-secret-that-is-long-enough-for-hs256!"  # >= 32 bytes (RFC 7518)
ISSUER = "https://idp.test"
AUDIENCE = "shop-api"

_parse_head = load("http1").parse_request_head


# --- keys and tokens -----------------------------------------------------------------


class KeyPair:
    def __init__(self, private: Any, kid: str) -> None:
        self.private = private
        self.public = private.public_key()
        self.kid = kid

    @property
    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self, alg: str | None = None, **extra: Any) -> dict[str, Any]:
        algorithm = {
            rsa.RSAPublicKey: jwt.algorithms.RSAAlgorithm,
            ec.EllipticCurvePublicKey: jwt.algorithms.ECAlgorithm,
            ed25519.Ed25519PublicKey: jwt.algorithms.OKPAlgorithm,
        }
        for kind, cls in algorithm.items():
            if isinstance(self.public, kind):
                doc = cls.to_jwk(self.public, as_dict=True)
                break
        doc["kid"] = self.kid
        if alg is not None:
            doc["alg"] = alg
        doc.update(extra)
        return doc


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for ISSUER/AUDIENCE, expiring in 10 minutes; ``name=None`` drops a claim."""
    now = int(time.time())
    doc = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, "group": "beta"}
    doc.update(overrides)
    return {name: value for name, value in doc.items() if value is not None}


def sign(key: Any, alg: str, payload: dict[str, Any] | None = None, kid: str | None = None) -> str:
    """A token signed with ``key`` (a KeyPair, or an HMAC secret as str/bytes)."""
    headers = {"kid": kid} if kid is not None else None
    secret = key.private if isinstance(key, KeyPair) else key
    return jwt.encode(claims() if payload is None else payload, secret, algorithm=alg, headers=headers)


def jwt_spec(**fields: Any) -> Jwt:
    doc = {"algorithms": ["RS256"], "issuers": [ISSUER], "audiences": [AUDIENCE], **fields}
    return msgspec.convert(doc, Jwt, strict=False, dec_hook=dec_hook)


# --- requests ---------------------------------------------------------------------------


def head(
    path: str = "/api/items", headers: list[tuple[str, str]] | None = None, host: str = "shop.test"
) -> Any:
    """A RequestHead as graylane's parser produces it."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "User-Agent: test", "Accept: */*"]
    lines += [f"{name}: {value}" for name, value in headers or ()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return _parse_head(raw, 8192, 100)


def bearer(token: str, path: str = "/api/items", **more: str) -> Any:
    return head(path, [("Authorization", f"Bearer {token}"), *more.items()])


# --- a real redis-server ----------------------------------------------------------------


class RedisServer:
    """redis-server on 127.0.0.1:port, no persistence; ``kill`` and ``start`` for outages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="graylane-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--protected-mode", "yes"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:  # ready when it answers PING; bounded by the deadline
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.proc.stderr.read().decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)  # polling a child process for readiness: no event to wait on

    def kill(self) -> None:
        """SIGKILL by PID (an outage, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_available() -> bool:
    return os.access(REDIS_SERVER, os.X_OK)


# --- configs ----------------------------------------------------------------------------------

SERVICES = {
    "shop": {"versions": {"v1": {"endpoints": ["127.0.0.1:9001"]}, "v2": {"endpoints": ["127.0.0.1:9002"]}}}
}


def config_problems(routes: list[dict[str, Any]], **top: Any) -> list[str]:
    """Every problem of a config with these routes (conversion, then validation)."""
    data = {"version": 1, "listeners": [{"address": "127.0.0.1:0"}], "services": SERVICES, "routes": routes}
    data.update(top)
    config, problems = convert(data, Config)
    if problems:
        return [f"{format_path(p.path)}: {p.message}" for p in problems]
    return validate(config)


def make_config(routes: list[dict[str, Any]], **top: Any) -> Config:
    data = {"version": 1, "listeners": [{"address": "127.0.0.1:0"}], "services": SERVICES, "routes": routes}
    data.update(top)
    config, problems = convert(data, Config)
    assert problems == [], problems
    assert validate(config) == []
    return config


# --- an HTTP server for JWKS documents ---------------------------------------------------


class DocumentServer:
    def __init__(self, raw: Callable[[], bytes | None]) -> None:
        self.raw = raw
        self.requests = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> DocumentServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    def url(self, path: str = "/jwks.json") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            raw = self.raw()
            if raw is None:
                await reader.read()  # hang until the client gives up
                return
            writer.write(raw)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def response(status: int, body: bytes, *, content_type: str = "application/json") -> bytes:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(status, "Other")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class JwksServer(DocumentServer):
    def __init__(self, keys: list[dict[str, Any]] | None = None) -> None:
        super().__init__(self._answer)
        self.keys = list(keys or [])
        self.down = False

    def _answer(self) -> bytes:
        if self.down:
            return response(503, b'{"error":"maintenance"}')
        return response(200, json.dumps({"keys": self.keys}).encode())
