"""The peer: a reverse proxy written the way people usually write one with aiohttp.

An ``aiohttp.web`` application on uvloop whose one handler forwards each request with a
shared ``ClientSession`` (its connection pool keeps upstream connections alive), reads the
whole answer and returns it, hop-by-hop headers dropped both ways. ``--canary`` adds what
graylane's canary scenario does: gray users by an X-User-ID regex, a sticky 90/10 split on a
hash of X-User-ID, the chosen version in a response header, and an access log to a file.

    python -m loadtest.aiohttp_proxy --port 8081 --upstream v1=127.0.0.1:9101 [--upstream v2=...]
        [--canary] [--access-log FILE]
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import zlib
from collections.abc import Sequence

import uvloop
from aiohttp import ClientSession, web
from multidict import CIMultiDict

HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    ]
)
GRAY_USER = re.compile(r"^user_gray_\d+$")
VERSION_HEADER = "X-Graylane-Version"
CANARY_PERCENT = 10
SALT = b"release"

UPSTREAMS = web.AppKey("upstreams", dict)
SESSION = web.AppKey("session", ClientSession)
CANARY = web.AppKey("canary", bool)


def choose_version(user: str | None, versions: Sequence[str]) -> str:
    """Gray users -> the second version; others sticky by a hash of their id; no id -> at random."""
    stable, canary = versions[0], versions[-1]
    if user is None:
        return canary if random.randrange(100) < CANARY_PERCENT else stable
    if GRAY_USER.match(user):
        return canary
    return canary if zlib.crc32(SALT + user.encode()) % 100 < CANARY_PERCENT else stable


def _forwardable(headers: object) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)  # type: ignore[attr-defined]


async def forward(request: web.Request) -> web.Response:
    app = request.app
    upstreams: dict[str, str] = app[UPSTREAMS]
    version = next(iter(upstreams))
    if app[CANARY]:
        version = choose_version(request.headers.get("X-User-ID"), list(upstreams))
    body = await request.read() if request.body_exists else None
    async with app[SESSION].request(
        request.method,
        upstreams[version] + request.path_qs,
        headers=_forwardable(request.headers),
        data=body,
        allow_redirects=False,
    ) as upstream:
        payload = await upstream.read()
        headers = _forwardable(upstream.headers)
    if app[CANARY]:
        headers[VERSION_HEADER] = version
    return web.Response(status=upstream.status, body=payload, headers=headers)


async def _open_session(app: web.Application) -> None:
    # auto_decompress off: bodies pass through as the origin sent them.
    app[SESSION] = ClientSession(auto_decompress=False)


async def _close_session(app: web.Application) -> None:
    await app[SESSION].close()


def build_app(upstreams: dict[str, str], *, canary: bool = False) -> web.Application:
    app = web.Application()
    app[UPSTREAMS] = upstreams
    app[CANARY] = canary
    app.on_startup.append(_open_session)
    app.on_cleanup.append(_close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def _access_logger(path: str | None) -> logging.Logger | None:
    if path is None:
        return None
    logger = logging.getLogger("aiohttp.access")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.FileHandler(path))
    logger.propagate = False
    return logger


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", action="append", required=True, metavar="NAME=HOST:PORT")
    parser.add_argument("--canary", action="store_true")
    parser.add_argument("--access-log", metavar="FILE")
    args = parser.parse_args(argv)
    upstreams = {}
    for item in args.upstream:
        name, _, address = item.partition("=")
        upstreams[name] = f"http://{address}"
    web.run_app(
        build_app(upstreams, canary=args.canary),
        host=args.host,
        port=args.port,
        print=None,
        access_log=_access_logger(args.access_log),
        backlog=4096,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
