"""TLS termination on a listener: certificate made by the test, clients that verify it."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest

from proxy.testing import RawClient
from proxy.testing.process import proxy_config

pytestmark = pytest.mark.integration


def _self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for localhost and 127.0.0.1, and its key: (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_proxy(backend, graylane, tmp_path):
    origin = backend()
    cert, key = _self_signed(tmp_path)
    proxy = graylane(proxy_config(origin.endpoint, tls={"cert": cert, "key": key}))
    return origin, proxy, cert


def _tls_client(proxy, cert: str, server_hostname: str = "localhost") -> RawClient:
    context = ssl.create_default_context(cafile=cert)
    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
    return RawClient.from_socket(context.wrap_socket(sock, server_hostname=server_hostname), timeout=5)


def test_tls_client_gets_the_backend_answer(tls_proxy):
    origin, proxy, cert = tls_proxy
    assert "(TLS)" in proxy.wait_for_log("listening on").string
    with _tls_client(proxy, cert) as client:
        for n in range(3):
            resp = client.request("GET", f"/secure/{n}", {"Host": "localhost"})
            assert resp.status == 200
            assert resp.json()["path"] == f"/secure/{n}"
    seen = origin.requests
    assert [r.header("X-Forwarded-Proto") for r in seen] == ["https"] * 3
    assert {r.connection_id for r in seen} == {1}  # plain HTTP keep-alive upstream


def test_tls_body_both_ways(tls_proxy):
    origin, proxy, cert = tls_proxy
    body = bytes(range(256)) * 4096  # 1 MiB
    with _tls_client(proxy, cert, "127.0.0.1") as client:
        resp = client.request("POST", "/echo", {"Host": "localhost"}, body)
        assert resp.body == body


def test_python_https_client_verifies_and_gets_an_answer(tls_proxy):
    import http.client

    origin, proxy, cert = tls_proxy
    context = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection("localhost", proxy.port, timeout=5, context=context)
    try:
        conn.request("GET", "/via-https")
        resp = conn.getresponse()
        assert resp.status == 200
        assert b'"x-forwarded-proto": "https"' in resp.read()
    finally:
        conn.close()


def test_plain_http_on_a_tls_listener_does_not_hurt_the_proxy(tls_proxy):
    origin, proxy, cert = tls_proxy
    with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        try:
            leftover = sock.recv(65536)
        except ConnectionResetError:
            leftover = b""
        assert not leftover.startswith(b"HTTP/1.1 200")
    with _tls_client(proxy, cert) as client:
        assert client.request("GET", "/still-fine", {"Host": "localhost"}).status == 200
    assert proxy.running


def test_client_that_does_not_trust_the_certificate_fails_the_handshake(tls_proxy):
    origin, proxy, cert = tls_proxy
    context = ssl.create_default_context()  # system roots only
    with (
        socket.create_connection((proxy.host, proxy.port), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(sock, server_hostname="localhost")
    # The proxy stays up for clients that do trust it.
    with _tls_client(proxy, cert) as client:
        assert client.request("GET", "/", {"Host": "localhost"}).status == 200


def test_failed_handshake_gives_its_slot_back_at_max_connections(backend, graylane, tmp_path):
    origin = backend()
    cert, key = _self_signed(tmp_path)
    config = proxy_config(origin.endpoint, tls={"cert": cert, "key": key}, limits={"max_connections": 1})
    proxy = graylane(config)
    for _ in range(2):  # connections that never become TLS must not use up the only slot
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            try:
                while sock.recv(65536):  # until the proxy drops it
                    pass
            except ConnectionResetError:
                pass
    with _tls_client(proxy, cert) as client:
        assert client.request("GET", "/", {"Host": "localhost"}).status == 200
