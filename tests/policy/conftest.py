"""Fixtures of the policy tests: real keys (generated once per session: RSA generation is
slow) and a real redis-server per test (skipped with a clear message when it is missing).
The helpers they use are in ``policy_support``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from policy_support import REDIS_SERVER, KeyPair, RedisServer, redis_available


@pytest.fixture(scope="session")
def rsa_key() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1")


@pytest.fixture(scope="session")
def rsa_key2() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2")


@pytest.fixture(scope="session")
def ec_key() -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP256R1()), "ec-1")


@pytest.fixture(scope="session")
def ec384_key() -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP384R1()), "ec-384")


@pytest.fixture(scope="session")
def ed_key() -> KeyPair:
    return KeyPair(ed25519.Ed25519PrivateKey.generate(), "ed-1")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip(
            f"{REDIS_SERVER} is missing: run scripts/install-system-deps.sh (Debian package redis-server)"
        )
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
