"""JWT authentication through a real graylane process: conf/jwt.yaml with a local JWKS server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from policy_support import KeyPair, claims, sign

from proxy.testing import Backend, GraylaneProcess, request

pytestmark = [
    pytest.mark.integration,
]

CONF = Path(__file__).resolve().parents[2] / "conf"
ISSUER, AUDIENCE = "https://idp.example.com/", "shop-api"  # as in conf/jwt.yaml


class Jwks:
    """A JWKS served over HTTP on 127.0.0.1 by a thread; ``keys`` may change while it runs."""

    def __init__(self, keys: list[dict]) -> None:
        self.keys = keys
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks(rsa_key: KeyPair) -> Iterator[Jwks]:
    server = Jwks([rsa_key.jwk("RS256")])
    yield server
    server.close()


@pytest.fixture
def proxy(
    jwks: Jwks, backend: Callable[..., Backend], graylane: Callable[..., GraylaneProcess]
) -> tuple[GraylaneProcess, Backend, Backend]:
    v1, v2 = backend("v1"), backend("v2")
    doc = yaml.safe_load((CONF / "jwt.yaml").read_text())
    doc["listeners"] = [{"address": "127.0.0.1:0"}]
    doc["admin"] = {"address": "127.0.0.1:0"}
    for name, server in (("v1", v1), ("v2", v2)):
        doc["services"]["api"]["versions"][name]["endpoints"] = [server.endpoint]
    doc["routes"][1]["auth"]["jwt"]["jwks_url"] = jwks.url
    return graylane(yaml.safe_dump(doc)), v1, v2


def token(pair: KeyPair, **overrides: object) -> str:
    return sign(pair, "RS256", claims(iss=ISSUER, aud=AUDIENCE, **overrides), kid=pair.kid)


def get(proxy: GraylaneProcess, path: str, token: str | None = None, **headers: str):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return request(proxy.host, proxy.port, "GET", path, headers)


def test_no_token_is_a_401_that_never_reaches_a_service(proxy) -> None:
    graylane, v1, v2 = proxy
    answer = get(graylane, "/api/items")
    assert answer.status == 401
    assert answer.get("WWW-Authenticate") == 'Bearer realm="graylane"'
    assert answer.json()["reason"] == "missing"
    assert get(graylane, "/healthz").status == 200  # a route without auth
    assert [r.path for r in v1.requests + v2.requests] == ["/healthz"]


def test_a_bad_token_names_its_reason(proxy, rsa_key: KeyPair, rsa_key2: KeyPair) -> None:
    graylane, v1, v2 = proxy
    expired = get(graylane, "/api/items", token(rsa_key, exp=int(time.time()) - 3600))
    assert expired.status == 401 and expired.json()["reason"] == "expired"
    assert 'error="invalid_token"' in expired.get("WWW-Authenticate")
    forged = get(
        graylane, "/api/items", sign(rsa_key2, "RS256", claims(iss=ISSUER, aud=AUDIENCE), kid="rsa-1")
    )
    assert forged.status == 401 and forged.json()["reason"] == "bad_signature"
    assert v1.requests == [] and v2.requests == []
    host, port = graylane.admin_address
    metrics = request(host, port, "GET", "/metrics").body.decode()
    assert 'graylane_auth_failures_total{reason="expired"} 1' in metrics
    assert 'graylane_auth_failures_total{reason="bad_signature"} 1' in metrics


def test_a_token_without_exp_is_refused_unless_the_route_opts_out(
    proxy, rsa_key: KeyPair, graylane: Callable[..., GraylaneProcess]
) -> None:
    running, v1, v2 = proxy
    standing = token(rsa_key, exp=None)
    answer = get(running, "/api/items", standing)
    assert answer.status == 401 and answer.json()["reason"] == "missing_claim"
    assert v1.requests == [] and v2.requests == []
    doc = yaml.safe_load(running.config_path.read_text())
    jwt = doc["routes"][1]["auth"]["jwt"]
    jwt["require_exp"] = False
    jwt["required_claims"] = ["sub"]  # conf/jwt.yaml names exp there too
    opted_out = graylane(yaml.safe_dump(doc))
    assert get(opted_out, "/api/items", standing).status == 200


def test_claims_steer_the_release_and_the_subject_is_forwarded(proxy, rsa_key: KeyPair) -> None:
    graylane, v1, v2 = proxy
    beta = get(graylane, "/api/items", token(rsa_key, sub="bob", groups=["beta"]), **{"X-User-ID": "admin"})
    assert beta.status == 200 and beta.get("X-Backend-Version") == "v2"
    assert v2.requests[-1].header_values("X-User-ID") == ["bob"]  # the client's own value is dropped
    for user in ("carol", "dave", "erin"):
        seen = {
            get(graylane, "/api/items", token(rsa_key, sub=user)).get("X-Backend-Version") for _ in range(5)
        }
        assert len(seen) == 1  # sticky on the subject


def test_a_rotated_key_is_fetched_when_a_token_names_it(
    proxy, jwks: Jwks, rsa_key: KeyPair, rsa_key2: KeyPair
) -> None:
    graylane, _, _ = proxy
    assert get(graylane, "/api/items", token(rsa_key)).status == 200
    jwks.keys = [rsa_key.jwk("RS256"), rsa_key2.jwk("RS256")]
    assert get(graylane, "/api/items", token(rsa_key2)).status == 200
    fetches = jwks.requests
    for i in range(20):  # made-up kids: the cooldown holds further fetches back
        assert (
            get(
                graylane, "/api/items", sign(rsa_key2, "RS256", claims(iss=ISSUER, aud=AUDIENCE), kid=f"x{i}")
            ).status
            == 401
        )
    assert jwks.requests == fetches
