"""A small blocking client of graylane's admin API (urllib), used by ``graylane status``.

Where the admin API is comes from ``--admin HOST:PORT`` or from a config file's ``admin``
section (``-c FILE``), which also gives the bearer token. A listener on a wildcard address
(``0.0.0.0``, ``[::]``) is reached on the loopback address of the same family. Proxies named
in the environment (``http_proxy``...) are ignored: the admin API is never behind one.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.error
import urllib.request
from typing import Any

from proxy.config.addresses import parse_host_port
from proxy.errors import GraylaneError

DEFAULT_ADDRESS = "127.0.0.1:9901"
DEFAULT_TIMEOUT = 5.0
MAX_ANSWER = 16 * 1024 * 1024  # bytes read from one answer at most

# No ProxyHandler entries: urllib would otherwise send loopback requests to $http_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AdminApiError(GraylaneError):
    """The admin API could not be reached, refused the request, or answered something unreadable.

    ``status`` is the HTTP status of a refusal (401 ...), None when nothing was answered.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def base_url(address: str) -> str:
    """``"127.0.0.1:9901"`` -> ``"http://127.0.0.1:9901"`` (also accepts an http:// URL).

    ValueError when ``address`` is not ``HOST:PORT``; a wildcard host becomes loopback.
    """
    text = address.strip()
    if text.startswith("http://"):
        text = text[len("http://") :].rstrip("/")
    elif "://" in text:
        raise ValueError(f"{address!r}: the admin API speaks plain http")
    host, port = parse_host_port(text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        host = "::1" if ip.version == 6 else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fetch_json(
    address: str, path: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT, method: str = "GET"
) -> Any:
    """``method`` (GET, or POST for changes) ``path`` on the admin API at ``address``; its JSON answer.

    Raises AdminApiError with a message meant for a person.
    """
    url = base_url(address) + path
    data = b"" if method == "POST" else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(req, timeout=timeout) as answer:
            body = answer.read(MAX_ANSWER)
    except urllib.error.HTTPError as error:
        raise _refused(error, url) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AdminApiError(f"cannot reach the admin API at {url}: {_describe(reason)}") from None
    try:
        return json.loads(body)
    except ValueError:
        raise AdminApiError(f"{url} did not answer JSON: {body[:80]!r}") from None


def fetch_status(address: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The admin API's /status document (see ``proxy.admin.status.status_document``)."""
    document = fetch_json(address, "/status", token, timeout)
    if not isinstance(document, dict) or "routes" not in document or "services" not in document:
        raise AdminApiError(f"{base_url(address)}/status is not a graylane status document")
    return document


def admin_from_config(path: str) -> tuple[str, str | None]:
    """``(address, token)`` of the admin API a config file sets up.

    ConfigError when the file is bad; AdminApiError when it has no admin API, or one on port 0
    (whose real port only the running process knows).
    """
    from proxy.config.load import load_config

    config = load_config(path)
    admin = config.admin
    if admin is None:
        raise AdminApiError(f"{path}: no admin section, so no admin API to ask (add one, or pass --admin)")
    if parse_host_port(admin.address, allow_port_zero=True).port == 0:
        raise AdminApiError(f"{path}: admin.address {admin.address} has port 0; pass --admin HOST:PORT")
    return admin.address, admin.token


def _refused(error: urllib.error.HTTPError, url: str) -> AdminApiError:
    if error.code == 401:
        return AdminApiError(f"{url}: the admin API wants a valid token (--token, or -c FILE)", 401)
    try:
        detail = json.loads(error.read(4096)).get("error", "")
    except (ValueError, AttributeError, OSError):
        detail = ""
    suffix = f": {detail}" if detail else ""
    return AdminApiError(f"{url} answered {error.code} {error.reason}{suffix}", error.code)


def _describe(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__
