"""Micro-benchmark of the head parser: ns per call, compiled extension and pure-Python twin.

Run: ``.venv/bin/python -m loadtest.parse_bench`` (``--repeat N`` for more timing rounds).
Each figure is the best of several timeit rounds, so it is the cost of the parser itself,
not of whatever else the machine was doing. The heads are what the data plane sees on its
common path: a minimal request, a browser's request, nginx's response to it, a chunked body.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from proxy._fast import compiled, pure

SMALL_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18081\r\n\r\n"

BROWSER_REQUEST = (
    b"GET /api/v1/items?page=2&sort=price HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=4f2a9c1e77d04b6b; theme=dark\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"\r\n"
)

NGINX_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Thu, 26 Nov 2026 23:16:36 GMT\r\n"
    b"Content-Type: text/html\r\n"
    b"Content-Length: 17\r\n"
    b"Last-Modified: Thu, 26 Nov 2026 22:37:39 GMT\r\n"
    b"Connection: keep-alive\r\n"
    b'ETag: "6b08b4b3-11"\r\n'
    b"Accept-Ranges: bytes\r\n"
    b"\r\n"
)

CHUNKED_BODY = b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in [b"x" * 100, b"y" * 20, b"z" * 3])
CHUNKED_BODY += b"0\r\n\r\n"


def cases(h1) -> list[tuple[str, Callable[[], object]]]:
    def chunked() -> object:
        return h1.ChunkedDecoder().feed(CHUNKED_BODY)

    return [
        ("parse_request_head: small request", lambda: h1.parse_request_head(SMALL_REQUEST, 8192, 100)),
        ("parse_request_head: browser, 8 headers", lambda: h1.parse_request_head(BROWSER_REQUEST, 8192, 100)),
        ("parse_response_head: nginx, 8 headers", lambda: h1.parse_response_head(NGINX_RESPONSE, 256)),
        ("ChunkedDecoder().feed: 3 chunks + last", chunked),
    ]


def ns_per_call(call: Callable[[], object], repeat: int) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    number = max(number, 1) * 2
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timing rounds per case (best is kept)")
    args = parser.parse_args(argv)
    forms = [("compiled", compiled("http1")), ("pure", pure("http1"))]
    for form, h1 in forms:
        if h1 is None:
            print(f"{form}: not built (pip install -e . builds it)")
            continue
        for title, call in cases(h1):
            print(f"{form:9} {title:42} {ns_per_call(call, args.repeat):9,.0f} ns")


if __name__ == "__main__":
    main()
