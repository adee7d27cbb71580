"""Loading keys: PEM files and certificates, JWKS documents, and the kid lookup."""

from __future__ import annotations

import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from policy_support import SECRET, KeyPair

from proxy.policy.keys import (
    EDDSA_ALGORITHMS,
    HMAC_ALGORITHMS,
    RSA_ALGORITHMS,
    KeyLoadError,
    KeySet,
    VerifyKey,
    algorithms_of,
    load_jwks_file,
    load_pem,
    load_pem_file,
    parse_jwks,
    secret_key,
)


def test_each_kind_of_key_is_bound_to_its_own_algorithms(
    rsa_key: KeyPair, ec_key: KeyPair, ec384_key: KeyPair, ed_key: KeyPair
) -> None:
    assert algorithms_of(rsa_key.public) == RSA_ALGORITHMS
    assert algorithms_of(ec_key.public) == {"ES256"}
    assert algorithms_of(ec384_key.public) == {"ES384"}
    assert algorithms_of(ed_key.public) == EDDSA_ALGORITHMS
    assert secret_key(SECRET).algorithms == HMAC_ALGORITHMS
    assert algorithms_of("not a key") == frozenset()


def test_a_pem_public_key_and_a_certificate_load(rsa_key: KeyPair, tmp_path) -> None:
    path = tmp_path / "rs.pem"
    path.write_bytes(rsa_key.public_pem)
    key = load_pem_file(str(path))
    assert key.algorithms == RSA_ALGORITHMS and key.kid is None
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public)
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(rsa_key.private, hashes.SHA256())
    )
    from_cert = load_pem(cert.public_bytes(serialization.Encoding.PEM), "cert.pem")
    assert from_cert.key.public_numbers() == rsa_key.public.public_numbers()


def test_a_private_key_or_garbage_is_refused(rsa_key: KeyPair, tmp_path) -> None:
    private = rsa_key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyLoadError, match="a private key"):
        load_pem(private, "priv.pem")
    with pytest.raises(KeyLoadError, match="not a PEM public key"):
        load_pem(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", "bad.pem")
    with pytest.raises(KeyLoadError, match="cannot read"):
        load_pem_file(str(tmp_path / "missing.pem"))


def test_a_jwks_keeps_usable_signing_keys_and_names_the_rest(
    rsa_key: KeyPair, ec_key: KeyPair, ed_key: KeyPair
) -> None:
    doc = {
        "keys": [
            rsa_key.jwk("RS256"),
            ec_key.jwk(),
            ed_key.jwk(),
            rsa_key.jwk(kid="enc-1", use="enc"),  # an encryption key: silently skipped
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
            {"kty": "RSA", "kid": "broken", "n": "AQAB"},
            "not an object",
            rsa_key.jwk("HS256", kid="confused"),  # an RSA key claiming an HMAC algorithm
        ]
    }
    keys, problems = parse_jwks(json.dumps(doc).encode(), "jwks", allow_secrets=False)
    assert [(key.kid, sorted(key.algorithms)) for key in keys] == [
        ("rsa-1", ["RS256"]),
        ("ec-1", ["ES256"]),
        ("ed-1", ["EdDSA"]),
    ]
    assert [problem.split(": ")[1] for problem in problems] == ["keys[4]", "keys[5]", "keys[6]", "keys[7]"]
    assert "symmetric" in problems[0] and "not an object" in problems[2]
    with_secrets, _ = parse_jwks(json.dumps(doc).encode(), "jwks", allow_secrets=True)
    assert ("hmac", HMAC_ALGORITHMS) in [(key.kid, key.algorithms) for key in with_secrets]


@pytest.mark.parametrize("body", [b"nope", b"[]", b'{"keys": 3}'])
def test_a_document_that_is_not_a_jwks(body: bytes) -> None:
    with pytest.raises(KeyLoadError):
        parse_jwks(body, "x", allow_secrets=False)


def test_a_jwks_file(rsa_key: KeyPair, tmp_path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_key.jwk()]}))
    keys, problems = load_jwks_file(str(path))
    assert [key.kid for key in keys] == ["rsa-1"] and problems == []


def test_candidates_by_kid_and_for_tokens_without_one() -> None:
    a1 = VerifyKey("a", b"k" * 32, HMAC_ALGORITHMS, "a")
    a2 = VerifyKey("a", b"j" * 32, frozenset(["HS512"]), "a2")
    unnamed = VerifyKey(None, b"u" * 32, HMAC_ALGORITHMS, "secret")
    keys = KeySet([a1, a2, unnamed])
    assert keys.candidates("a", "HS256") == [a1, unnamed]
    assert keys.candidates("a", "HS512") == [a1, a2, unnamed]
    assert keys.candidates("zzz", "HS256") == [unnamed]  # an unnamed key serves any kid
    assert keys.candidates(None, "HS256") == [a1, unnamed]
    assert keys.candidates("a", "RS256") == []
    assert len(keys) == 3 and "a" in keys.by_kid
