"""JwtAuth with real keys: what passes, every way a token fails, the caches and the claims."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt as pyjwt
import pytest
from policy_support import AUDIENCE, ISSUER, SECRET, KeyPair, bearer, claims, head, jwt_spec, sign

from proxy.errors import Unauthorized
from proxy.policy.jwt import FAILURE_TTL, AuthCounters, JwtAuth, flatten_claims
from proxy.policy.keys import KeySet, VerifyKey, algorithms_of, load_pem, parse_jwks, secret_key


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def public(pair: KeyPair, kid: str | None = None) -> VerifyKey:
    return VerifyKey(kid, pair.public, algorithms_of(pair.public), "test")


def make_auth(keys: list[VerifyKey], clock: Any = time.time, **fields: Any) -> JwtAuth:
    return JwtAuth(jwt_spec(**fields), KeySet(keys), None, AuthCounters(), clock)


def reason_of(auth: JwtAuth, req: Any) -> str:
    with pytest.raises(Unauthorized) as info:
        auth.verify(req)
    assert info.value.status == 401 and info.value.flag == "UAEX"
    assert info.value.headers.startswith(b'WWW-Authenticate: Bearer realm="graylane"')
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- tokens that pass -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pair_name", "alg"),
    [("rsa_key", "RS256"), ("rsa_key", "PS256"), ("ec_key", "ES256"), ("ed_key", "EdDSA")],
)
def test_a_valid_token_gives_its_identity(request: pytest.FixtureRequest, pair_name: str, alg: str) -> None:
    pair = request.getfixturevalue(pair_name)
    auth = make_auth([public(pair)], algorithms=[alg], forward_claims={"sub": "X-User-ID"})
    identity = auth.verify(bearer(sign(pair, alg)))
    assert identity.claims["sub"] == "alice"
    assert identity.route_claims["group"] == "beta"
    assert identity.headers == b"X-User-ID: alice\r\n"
    assert auth.counters.verified == 1


def test_an_hs256_token_verifies_with_the_secret() -> None:
    auth = make_auth([secret_key(SECRET)], algorithms=["HS256"])
    assert auth.verify(bearer(sign(SECRET, "HS256"))).claims["sub"] == "alice"


def test_a_verified_token_is_a_cache_hit_until_it_expires(rsa_key: KeyPair) -> None:
    clock = Clock()
    auth = make_auth([public(rsa_key)], clock, leeway=0)
    token = sign(rsa_key, "RS256", claims(exp=int(clock.now) + 60))
    first = auth.verify(bearer(token))
    assert auth.verify(bearer(token)) is first
    assert (auth.counters.verified, auth.counters.cache_hits) == (1, 1)
    clock.now += 61  # past exp on graylane's clock (pyjwt reads the real one, where it is still valid)
    assert auth.verify(bearer(token)) is not first
    assert (auth.counters.verified, auth.counters.cache_hits) == (2, 1)  # verified again, not a hit


def test_the_leeway_admits_a_token_just_expired(rsa_key: KeyPair) -> None:
    token = sign(rsa_key, "RS256", claims(exp=int(time.time()) - 10))
    assert make_auth([public(rsa_key)], leeway=30).verify(bearer(token)).claims["sub"] == "alice"
    assert reason_of(make_auth([public(rsa_key)], leeway=0), bearer(token)) == "expired"


def test_a_token_can_come_from_a_header_or_a_cookie(rsa_key: KeyPair) -> None:
    token = sign(rsa_key, "RS256")
    by_header = make_auth([public(rsa_key)], header="X-Token")
    assert by_header.verify(head(headers=[("X-Token", token)])).claims["sub"] == "alice"
    by_cookie = make_auth([public(rsa_key)], cookie="session")
    assert by_cookie.verify(head(headers=[("Cookie", f"a=1; session={token}")])).claims["sub"] == "alice"
    assert reason_of(by_cookie, bearer(token)) == "missing"


def test_a_missing_token_is_a_401_without_error_code_unless_allowed(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)])
    with pytest.raises(Unauthorized) as info:
        auth.verify(head())
    assert info.value.reason == "missing"
    assert info.value.headers == b'WWW-Authenticate: Bearer realm="graylane"\r\n'
    assert make_auth([public(rsa_key)], allow_missing=True).verify(head()) is None
    # allow_missing never lets a bad token through
    assert reason_of(make_auth([public(rsa_key)], allow_missing=True), bearer("x.y.z")) == "malformed"


# --- tokens that fail, one reason each --------------------------------------------------------


def test_alg_none_is_refused_even_when_configured(rsa_key: KeyPair) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    for algorithms in (["RS256"], ["RS256", "none"]):
        auth = make_auth([public(rsa_key)], algorithms=algorithms)
        assert reason_of(auth, bearer(token)) == "bad_algorithm"


def test_hs256_signed_with_the_public_key_is_refused(rsa_key: KeyPair) -> None:
    """The RS/HS confusion: a public key must never be used as an HMAC secret."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    import hashlib
    import hmac

    mac = hmac.new(rsa_key.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64(mac)}"
    # Only RS256 allowed: refused for its algorithm.
    assert reason_of(make_auth([public(rsa_key)]), bearer(forged)) == "bad_algorithm"
    # HS256 allowed too, with an RSA key and no secret: no key may verify HS256.
    both = make_auth([public(rsa_key)], algorithms=["RS256", "HS256"])
    assert reason_of(both, bearer(forged)) == "bad_algorithm"
    # A secret configured as well: the forgery is checked against the secret only, and fails.
    with_secret = make_auth([public(rsa_key), secret_key(SECRET)], algorithms=["RS256", "HS256"])
    assert reason_of(with_secret, bearer(forged)) == "bad_signature"
    # Same with a JWKS-style key loaded from PEM (keys are bound to their kind when loaded).
    pem_key = load_pem(rsa_key.public_pem, "rs.pem")
    assert "HS256" not in pem_key.algorithms
    assert reason_of(make_auth([pem_key], algorithms=["RS256", "HS256"]), bearer(forged)) == "bad_algorithm"


def test_an_expired_token(rsa_key: KeyPair) -> None:
    token = sign(rsa_key, "RS256", claims(exp=int(time.time()) - 3600))
    auth = make_auth([public(rsa_key)])
    with pytest.raises(Unauthorized) as info:
        auth.verify(bearer(token))
    assert info.value.reason == "expired"
    assert info.value.headers == (
        b'WWW-Authenticate: Bearer realm="graylane", error="invalid_token", '
        b'error_description="token expired"\r\n'
    )


def test_a_token_not_yet_valid(rsa_key: KeyPair) -> None:
    token = sign(rsa_key, "RS256", claims(nbf=int(time.time()) + 3600))
    assert reason_of(make_auth([public(rsa_key)]), bearer(token)) == "not_yet_valid"


def test_wrong_issuer_and_wrong_audience(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)])
    assert reason_of(auth, bearer(sign(rsa_key, "RS256", claims(iss="https://evil.test")))) == "bad_issuer"
    assert reason_of(auth, bearer(sign(rsa_key, "RS256", claims(aud="other-api")))) == "bad_audience"
    # aud given as a list naming ours passes
    assert auth.verify(bearer(sign(rsa_key, "RS256", claims(aud=["x", AUDIENCE])))).claims["sub"] == "alice"


def test_without_configured_audiences_any_audience_passes(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)], audiences=[], issuers=[])
    assert auth.verify(bearer(sign(rsa_key, "RS256", claims(aud="anything", iss="x")))).claims


def test_a_required_claim_is_missing(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)], required_claims=["exp", "sub"])
    assert reason_of(auth, bearer(sign(rsa_key, "RS256", claims(sub=None)))) == "missing_claim"
    assert reason_of(auth, bearer(sign(rsa_key, "RS256", claims(exp=None)))) == "missing_claim"


def test_a_token_without_exp_is_refused_by_default(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)])
    no_exp = bearer(sign(rsa_key, "RS256", claims(exp=None)))
    assert reason_of(auth, no_exp) == "missing_claim"
    assert auth.verify(bearer(sign(rsa_key, "RS256", claims()))).claims["sub"] == "alice"


def test_require_exp_false_accepts_a_token_without_exp(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)], require_exp=False)
    assert auth.verify(bearer(sign(rsa_key, "RS256", claims(exp=None)))).claims["sub"] == "alice"


def test_an_unknown_kid(rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    auth = make_auth([public(rsa_key, kid="rsa-1")])
    assert reason_of(auth, bearer(sign(rsa_key2, "RS256", kid="rsa-9"))) == "unknown_kid"


def test_a_tampered_signature_or_payload(rsa_key: KeyPair) -> None:
    token = sign(rsa_key, "RS256")
    header, payload, signature = token.split(".")
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    auth = make_auth([public(rsa_key)])
    assert reason_of(auth, bearer(f"{header}.{payload}.{flipped}")) == "bad_signature"
    evil = b64(json.dumps(claims(sub="admin")).encode())
    assert reason_of(auth, bearer(f"{header}.{evil}.{signature}")) == "bad_signature"


def test_a_token_signed_by_another_key(rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    assert reason_of(make_auth([public(rsa_key)]), bearer(sign(rsa_key2, "RS256"))) == "bad_signature"


def test_an_ec_key_verifies_only_the_algorithm_of_its_curve(ec_key: KeyPair, ec384_key: KeyPair) -> None:
    auth = make_auth([public(ec384_key)], algorithms=["ES256", "ES384"])
    assert reason_of(auth, bearer(sign(ec_key, "ES256"))) == "bad_algorithm"
    assert auth.verify(bearer(sign(ec384_key, "ES384"))).claims["sub"] == "alice"


@pytest.mark.parametrize("value", ["x.y.z", "abc", "Zm9v.YmFy", "a..b"])
def test_malformed_tokens(rsa_key: KeyPair, value: str) -> None:
    assert reason_of(make_auth([public(rsa_key)]), bearer(value)) == "malformed"


def test_an_empty_bearer_or_two_authorization_headers_are_malformed(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)])
    assert reason_of(auth, head(headers=[("Authorization", "Bearer ")])) == "malformed"
    token = sign(rsa_key, "RS256")
    two = head(headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")])
    assert reason_of(auth, two) == "malformed"
    assert reason_of(auth, head(headers=[("Authorization", "Basic dXNlcjpwdw==")])) == "missing"


def test_failures_are_counted_by_reason(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)])
    for req in (head(), head(), bearer("x.y.z"), bearer(sign(rsa_key, "RS256", claims(iss="bad")))):
        with pytest.raises(Unauthorized):
            auth.verify(req)
    failures = {reason: n for reason, n in auth.counters.failures.items() if n}
    assert failures == {"missing": 2, "malformed": 1, "bad_issuer": 1}


def test_a_repeated_bad_token_is_not_verified_again(rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    clock = Clock()
    auth = make_auth([public(rsa_key)], clock)
    calls = []
    decode = auth._decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return decode(*args, **kwargs)

    auth._decode = counting
    token = bearer(sign(rsa_key2, "RS256"))
    for _ in range(5):
        assert reason_of(auth, token) == "bad_signature"
    assert len(calls) == 1
    assert auth.counters.failures["bad_signature"] == 5
    clock.now += FAILURE_TTL + 1
    assert reason_of(auth, token) == "bad_signature"
    assert len(calls) == 2


def test_the_cache_is_bounded(rsa_key: KeyPair) -> None:
    auth = make_auth([public(rsa_key)], cache_size=3)
    tokens = [sign(rsa_key, "RS256", claims(sub=f"user{i}")) for i in range(5)]
    for token in tokens:
        auth.verify(bearer(token))
    assert len(auth._cache) == 3
    auth.verify(bearer(tokens[-1]))
    assert auth.counters.cache_hits == 1
    assert make_auth([public(rsa_key)], cache_size=0).verify(bearer(tokens[0])).claims


# --- claims for the gray release ------------------------------------------------------------------


def test_flatten_claims() -> None:
    flat = flatten_claims(
        {
            "sub": "alice",
            "n": 3,
            "ok": True,
            "groups": ["beta", "staff", 7],
            "realm_access": {"roles": ["admin"], "deep": {"deeper": {"x": "too deep"}}},
            "nothing": None,
        }
    )
    assert flat == {
        "sub": "alice",
        "n": "3",
        "ok": "true",
        "groups": ("beta", "staff", "7"),
        "realm_access.roles": ("admin",),  # objects are flattened, three names deep at most
    }


def test_forwarded_claims_are_serialised_once_and_never_split_the_head(rsa_key: KeyPair) -> None:
    auth = make_auth(
        [public(rsa_key)], forward_claims={"sub": "X-User-ID", "groups": "X-Groups", "absent": "X-None"}
    )
    identity = auth.verify(bearer(sign(rsa_key, "RS256", claims(groups=["beta", "qa"]))))
    assert identity.headers == b"X-User-ID: alice\r\nX-Groups: beta,qa\r\n"
    evil = auth.verify(bearer(sign(rsa_key, "RS256", claims(sub="mallory\r\nX-Admin: yes"))))
    assert b"X-Admin" not in evil.headers and b"X-User-ID" not in evil.headers
    assert auth.counters.headers_dropped == 1


def test_keys_from_a_jwks_document_are_looked_up_by_kid(rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    doc = json.dumps({"keys": [rsa_key.jwk("RS256"), rsa_key2.jwk("RS256")]}).encode()
    keys, problems = parse_jwks(doc, "test", allow_secrets=False)
    assert problems == []
    auth = make_auth(keys)
    assert auth.verify(bearer(sign(rsa_key2, "RS256", kid="rsa-2"))).claims["sub"] == "alice"
    assert auth.verify(bearer(sign(rsa_key, "RS256", kid="rsa-1"))).claims["sub"] == "alice"
    # A token without a kid is tried against every key of its kind.
    assert auth.verify(bearer(sign(rsa_key2, "RS256"))).claims["sub"] == "alice"
    # A key that names its algorithm verifies only that one.
    assert reason_of(
        make_auth(keys, algorithms=["RS256", "PS256"]), bearer(sign(rsa_key, "PS256", kid="rsa-1"))
    ) == ("bad_algorithm")


def test_pyjwt_and_graylane_agree_on_a_valid_token(rsa_key: KeyPair) -> None:
    token = sign(rsa_key, "RS256")
    expected = pyjwt.decode(token, rsa_key.public, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
    assert make_auth([public(rsa_key)]).verify(bearer(token)).claims == expected
