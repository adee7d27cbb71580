"""Shared pieces of the end-to-end tests: config builders, a pipelining load client, reload steps.

Every test here runs real sockets on loopback: ``proxy.testing.Backend`` origins (named
after the version they play, which they report in ``X-Backend-Version``) behind a real
``python -m proxy run`` child listening on 127.0.0.1:0.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from proxy.testing import Backend, GraylaneProcess, RecordedRequest, Response, request

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
RELOADED = "configuration reloaded"
RELOAD_FAILED = "reload failed, keeping the running config"

# --- configs ------------------------------------------------------------------------


def service(*backends: Backend, **extra: Any) -> dict[str, Any]:
    """A service with one version per backend (named like it, in order: the first is stable)."""
    return {"versions": {b.name: {"endpoints": [b.endpoint]} for b in backends}, **extra}


def config(services: Mapping[str, Any], routes: Sequence[Mapping[str, Any]], **top: Any) -> str:
    """Config text with one listener on 127.0.0.1:0 (JSON, which is YAML)."""
    doc = {
        "version": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "services": dict(services),
        "routes": list(routes),
        **top,
    }
    return json.dumps(doc, indent=1) + "\n"


def split(**weights: int) -> list[dict[str, Any]]:
    """``split(v1=70, v2=30)`` -> the route's ``split`` list."""
    return [{"version": version, "weight": weight} for version, weight in weights.items()]


def example(name: str, endpoints: Mapping[str, Backend]) -> str:
    """An example of conf/ made runnable here: listeners (and the admin API) on 127.0.0.1:0, each
    version's endpoints replaced by the backend of ``endpoints[version]``; everything else as written."""
    doc = yaml.safe_load((CONF_DIR / name).read_text())
    for listener in doc["listeners"]:
        listener["address"] = "127.0.0.1:0"
    for spec in doc["services"].values():
        for version, vspec in spec["versions"].items():
            vspec["endpoints"] = [endpoints[version].endpoint]
    if "admin" in doc:
        doc["admin"] = {"address": "127.0.0.1:0"}
    return yaml.safe_dump(doc, sort_keys=False)


# --- serving a whole module ---------------------------------------------------------


@contextmanager
def serving(
    make_config: Callable[[dict[str, Backend]], str], *names: str
) -> Iterator[tuple[dict[str, Backend], GraylaneProcess]]:
    """Backends named ``names`` and a graylane on ``make_config(backends)``, stopped on exit
    (for fixtures that serve a whole module; tests then ``clear()`` the backends first)."""
    with ExitStack() as stack:
        backends = {name: stack.enter_context(Backend(name)) for name in names}
        proxy = stack.enter_context(GraylaneProcess(make_config(backends)))
        yield backends, proxy


# --- requests -----------------------------------------------------------------------


def get(proxy: GraylaneProcess, path: str = "/", headers: Mapping[str, str] | None = None) -> Response:
    """One GET on a fresh connection."""
    return request(proxy.host, proxy.port, "GET", path, headers, timeout=10)


def versions_of(
    proxy: GraylaneProcess, count: int, path: str = "/", headers: Mapping[str, str] | None = None
) -> Counter[str]:
    """How many of ``count`` identical requests each version answered (by X-Backend-Version)."""
    tally = blast(proxy.address, [raw_get(path, headers)] * count, connections=1)
    assert {status for status, _ in tally} == {200}, tally
    return Counter({version: n for (_, version), n in tally.items()})


def raw_get(path: str = "/", headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> bytes:
    """The bytes of one keep-alive GET (Host: e2e unless given)."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    if not any(name.lower() == "host" for name, _ in items):
        items.insert(0, ("Host", "e2e"))
    lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in items), "", ""]
    return "\r\n".join(lines).encode("latin-1")


# --- pipelined load -----------------------------------------------------------------

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_VERSION = re.compile(rb"\r\nx-backend-version:[ \t]*([^\r]*)", re.IGNORECASE)
_NO_BODY = frozenset([204, 304])

Tally = Counter[tuple[int, str | None]]


def blast(
    address: tuple[str, int],
    requests: Sequence[bytes],
    *,
    connections: int = 4,
    batch: int = 200,
    timeout: float = 60.0,
    source: str | None = None,
) -> Tally:
    """Send ``requests`` pipelined over ``connections`` keep-alive connections (one thread each)
    and read every response; returns how many came back per (status, X-Backend-Version).

    Each connection writes its share in batches of ``batch`` requests, one send per batch,
    keeping at most two batches unanswered, and parses responses as they arrive (they must
    carry a Content-Length unless they are 204 or 304, as the test backends' and graylane's
    own answers do).
    ``source`` binds the client sockets to that local address (e.g. 127.0.0.7).
    """
    shares = [requests[i::connections] for i in range(connections)]
    tallies: list[Tally] = [Counter() for _ in shares]
    errors: list[BaseException] = []
    deadline = time.monotonic() + timeout

    def run(share: Sequence[bytes], tally: Tally) -> None:
        try:
            _pipeline(address, share, batch, deadline, source, tally)
        except BaseException as exc:  # reported to the calling thread
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(share, tally), daemon=True)
        for share, tally in zip(shares, tallies, strict=True)
        if share
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.1))
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"pipelined load did not finish within {timeout}s")
    total: Tally = Counter()
    for tally in tallies:
        total.update(tally)
    return total


def _pipeline(
    address: tuple[str, int],
    share: Sequence[bytes],
    batch: int,
    deadline: float,
    source: str | None,
    tally: Tally,
) -> None:
    sock = socket.create_connection(
        address, timeout=max(deadline - time.monotonic(), 0.1), source_address=(source, 0) if source else None
    )
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = answered = 0
        buf = b""
        while answered < len(share):  # each pass reads or fails; the deadline bounds it
            if sent < len(share) and sent - answered <= batch:
                chunk = share[sent : sent + batch]
                sock.sendall(b"".join(chunk))
                sent += len(chunk)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{answered} of {len(share)} responses before the deadline")
            sock.settimeout(remaining)
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"connection closed after {answered} of {len(share)} responses")
            buf = buf + data if buf else data
            start = 0
            while True:
                end = buf.find(b"\r\n\r\n", start)
                if end == -1:
                    break
                head = buf[start : end + 2]
                match = _STATUS.match(head)
                if match is None:
                    raise AssertionError(f"not a response head: {head[:300]!r}")
                status = int(match.group(1))
                body_end = end + 4
                if status not in _NO_BODY:
                    length = _LENGTH.search(head)
                    if length is None:
                        raise AssertionError(f"response without Content-Length: {head[:300]!r}")
                    body_end += int(length.group(1))
                    if body_end > len(buf):
                        break
                version = _VERSION.search(head)
                tally[status, version.group(1).decode() if version else None] += 1
                answered += 1
                start = body_end
            buf = buf[start:]


def can_bind(host: str) -> bool:
    """Whether a socket can bind ``host`` (Linux answers for all of 127.0.0.0/8, not every OS does)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


# --- what the backends saw ----------------------------------------------------------


def assignments(
    backends: Iterable[Backend], key: Callable[[RecordedRequest], str | None]
) -> dict[tuple[str | None, str | None], set[str]]:
    """(Host seen upstream, key) -> the versions that answered requests with that key."""
    seen: dict[tuple[str | None, str | None], set[str]] = {}
    for backend in backends:
        for req in backend.requests:
            seen.setdefault((req.header("Host"), key(req)), set()).add(backend.name)
    return seen


def counts(*backends: Backend) -> dict[str, int]:
    """Requests received so far, per backend name."""
    return {b.name: len(b.requests) for b in backends}


# --- reloads ------------------------------------------------------------------------


def reload(proxy: GraylaneProcess, text: str, *, timeout: float = 10.0) -> None:
    """Write ``text`` as the config, SIGHUP, and wait until graylane says it reloaded."""
    mark = proxy.log_mark()
    proxy.write_config(text)
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log(RELOADED, timeout, since=mark)


def refused_reload(proxy: GraylaneProcess, text: str, why: str, *, timeout: float = 10.0) -> None:
    """Write a bad config, SIGHUP, and wait for the refusal and the line saying ``why`` (a regex)."""
    mark = proxy.log_mark()
    proxy.write_config(text)
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_for_log(RELOAD_FAILED, timeout, since=mark)
    proxy.wait_for_log(why, timeout, since=mark)


def admin(proxy: GraylaneProcess, method: str, path: str) -> Response:
    host, port = proxy.admin_address
    return request(host, port, method, path, timeout=10)
