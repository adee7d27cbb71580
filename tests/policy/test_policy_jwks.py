"""Keys from a JWKS URL served by a local HTTP server: rotation, cooldown, stale keys while down."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from policy_support import JwksServer, KeyPair, bearer, jwt_spec, sign

from proxy.errors import Unauthorized
from proxy.policy.jwt import AuthCounters, JwtAuth, KeysPending
from proxy.policy.keys import KeyRegistry, KeySet, RemoteJwks

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def auth_for(remote: RemoteJwks) -> JwtAuth:
    return JwtAuth(jwt_spec(jwks_url=remote.url), KeySet(), remote, AuthCounters())


def reason(auth: JwtAuth, token: str, may_wait: bool = True) -> str:
    with pytest.raises(Unauthorized) as info:
        auth.verify(bearer(token), may_wait)
    return info.value.reason


async def verify_after_wait(auth: JwtAuth, token: str) -> Any:
    """What a data plane does with KeysPending: wait for the fetch, then verify once more."""
    with pytest.raises(KeysPending) as info:
        auth.verify(bearer(token))
    fetched = asyncio.Event()
    info.value.wait(fetched.set)
    await asyncio.wait_for(fetched.wait(), 10)
    return auth.verify(bearer(token), may_wait=False)


def test_rotation_brings_the_new_key_and_drops_the_old(rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    async def scenario() -> None:
        async with JwksServer([rsa_key.jwk("RS256")]) as server:
            clock = Clock()
            remote = RemoteJwks(server.url(), cooldown=30, clock=clock)
            assert await remote.refresh() is True
            auth = auth_for(remote)
            old_token = sign(rsa_key, "RS256", kid="rsa-1")
            assert auth.verify(bearer(old_token)).claims["sub"] == "alice"

            server.keys = [rsa_key2.jwk("RS256")]  # the provider rotates
            identity = await verify_after_wait(auth, sign(rsa_key2, "RS256", kid="rsa-2"))
            assert identity.claims["sub"] == "alice"
            assert (server.requests, remote.kid_fetches, remote.generation) == (2, 1, 2)
            # The old key is gone: its token was cached, but the cache went with the key set.
            assert reason(auth, old_token) == "unknown_kid"
            assert server.requests == 2  # within the cooldown: no new fetch for the unknown kid
            await remote.close()

    asyncio.run(scenario())


def test_unknown_kids_cannot_make_graylane_hammer_the_provider(rsa_key: KeyPair) -> None:
    async def scenario() -> None:
        async with JwksServer([rsa_key.jwk("RS256")]) as server:
            clock = Clock()
            remote = RemoteJwks(server.url(), cooldown=30, clock=clock)
            await remote.refresh()  # the start-up fetch does not hold kid fetches back
            auth = auth_for(remote)
            with pytest.raises(Unauthorized):
                await verify_after_wait(auth, sign(rsa_key, "RS256", kid="made-up-0"))
            assert server.requests == 2
            for i in range(1, 50):
                assert reason(auth, sign(rsa_key, "RS256", kid=f"made-up-{i}")) == "unknown_kid"
            assert server.requests == 2 and (remote.kid_fetches, remote.kid_refused) == (1, 49)
            clock.now += 31  # the cooldown is over: one more fetch is allowed
            tokens = [sign(rsa_key, "RS256", kid=f"again-{i}") for i in range(20)]
            pending = []
            for token in tokens:
                with pytest.raises(KeysPending) as info:
                    auth.verify(bearer(token))
                pending.append(info.value)
            done = asyncio.Event()
            pending[-1].wait(done.set)
            await asyncio.wait_for(done.wait(), 10)
            assert server.requests == 3  # twenty waiting requests shared one fetch
            assert reason(auth, tokens[0], may_wait=False) == "unknown_kid"
            await remote.close()

    asyncio.run(scenario())


def test_stale_keys_are_served_while_the_provider_is_down(
    rsa_key: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with JwksServer([rsa_key.jwk("RS256")]) as server:
            remote = RemoteJwks(server.url())
            assert await remote.refresh() is True
            auth = auth_for(remote)
            token = sign(rsa_key, "RS256", kid="rsa-1")
            server.down = True
            with caplog.at_level(logging.INFO, logger="graylane"):
                for _ in range(3):
                    assert await remote.refresh() is False
                assert remote.down and remote.failures == 3 and "503" in remote.last_error
                assert auth.verify(bearer(token)).claims["sub"] == "alice"
                server.down = False
                assert await remote.refresh() is True
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "serving the 1 keys fetched before" in warnings[0]
            assert any("reachable again" in r.getMessage() for r in caplog.records)
            assert remote.generation == 1  # the same document: the key set did not change
            await remote.close()

    asyncio.run(scenario())


def test_before_the_first_fetch_succeeds_tokens_fail_with_no_keys(rsa_key: KeyPair) -> None:
    async def scenario() -> None:
        async with JwksServer([rsa_key.jwk("RS256")]) as server:
            server.down = True
            remote = RemoteJwks(server.url(), cooldown=30)
            auth = auth_for(remote)
            token = sign(rsa_key, "RS256", kid="rsa-1")
            with pytest.raises(KeysPending) as info:  # the first request starts the first fetch
                auth.verify(bearer(token))
            done = asyncio.Event()
            info.value.wait(done.set)
            await asyncio.wait_for(done.wait(), 10)
            assert reason(auth, token, may_wait=False) == "no_keys"
            await remote.close()

    asyncio.run(scenario())


def test_the_background_task_fetches_at_start_and_every_refresh(rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    async def scenario() -> None:
        async with JwksServer([rsa_key.jwk("RS256")]) as server:
            third = asyncio.Event()
            answer = server.raw

            def counting() -> bytes | None:
                if server.requests >= 3:
                    third.set()
                return answer()

            server.raw = counting
            remote = RemoteJwks(server.url(), refresh=0.05)
            remote.start()
            remote.start()  # idempotent
            server.keys = [rsa_key.jwk("RS256"), rsa_key2.jwk("RS256")]
            await asyncio.wait_for(third.wait(), 10)
            await remote.close()
            assert remote.fetches >= 3
            assert set(remote.keys.by_kid) == {"rsa-1", "rsa-2"}

    asyncio.run(scenario())


def test_the_registry_shares_one_fetcher_per_url_and_forgets_unused_ones() -> None:
    async def scenario() -> None:
        registry = KeyRegistry()
        a = registry.get("http://127.0.0.1:9/a", refresh=60, cooldown=5, timeout=1)
        assert registry.get("http://127.0.0.1:9/a", refresh=120, cooldown=5, timeout=1) is a
        assert a.refresh_interval == 120  # the newest config's settings
        registry.get("http://127.0.0.1:9/b", refresh=60, cooldown=5, timeout=1)
        await registry.retain(["http://127.0.0.1:9/a"])
        assert list(registry.remotes) == ["http://127.0.0.1:9/a"]
        await registry.close()
        assert registry.remotes == {}

    asyncio.run(scenario())
