"""The one exception hierarchy of graylane.

Every error that can end a request carries the HTTP status to answer with and
the access-log response flag (Envoy's style), so that the translation to a
response happens in one place (``proxy.http.responses``).
"""

from __future__ import annotations


class GraylaneError(Exception):
    """Base of every error graylane raises on purpose."""


class ConfigError(GraylaneError):
    """A configuration that cannot be used.

    ``problems`` lists every problem found, each already formatted as
    ``FILE: PATH: what is wrong`` (with ``(line N)`` when known).
    """

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = problems
        super().__init__("\n".join(problems))


class StartupError(GraylaneError):
    """The proxy cannot start (a port in use, a missing certificate...)."""


class HttpError(GraylaneError):
    """An error that ends one request with a status and a response flag."""

    status = 500
    flag = "-"
    close = False  # close the client connection after answering

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or self.__class__.__name__)
        self.reason = reason


# Client-side errors: the request itself is bad. All of these close the
# connection, because after bad framing nothing later on the stream can be trusted.
class BadRequest(HttpError):
    status = 400
    flag = "DPE"  # downstream protocol error
    close = True


class UriTooLong(BadRequest):
    status = 414


class HeaderTooLarge(BadRequest):
    status = 431


class VersionNotSupported(BadRequest):
    status = 505


class RequestTimeout(BadRequest):
    status = 408
    flag = "DT"


class MethodNotAllowed(HttpError):
    """405: a method graylane does not pass on (TRACE, unless ``protocol.trace``)."""

    status = 405
    flag = "MNA"  # graylane's own flag: Envoy has none for it
    headers = b""  # the Allow line

    def __init__(self, reason: str = "", headers: bytes = b"") -> None:
        super().__init__(reason)
        if headers:
            self.headers = headers


class NoRoute(HttpError):
    status = 404
    flag = "NR"


class NoHealthyUpstream(HttpError):
    status = 503
    flag = "UH"


# Upstream-side errors: the request was fine, the upstream failed it.
class UpstreamError(HttpError):
    status = 502
    flag = "UC"


class UpstreamConnectError(UpstreamError):
    flag = "UF"


class UpstreamReset(UpstreamError):
    flag = "UC"


class UpstreamProtocolError(UpstreamError):
    flag = "UPE"


class UpstreamTimeout(UpstreamError):
    status = 504
    flag = "UT"


# Policy answers: the request was well-formed, a route's policy refused it. Both carry
# extra response header lines (pre-serialised, each ending CRLF) for the error response.
class Unauthorized(HttpError):
    """401: no valid token (``reason`` is a short code such as ``expired``; see proxy.policy.jwt)."""

    status = 401
    flag = "UAEX"
    headers = b""  # the WWW-Authenticate line

    def __init__(self, reason: str = "", headers: bytes = b"") -> None:
        super().__init__(reason)
        if headers:
            self.headers = headers


class RateLimited(HttpError):
    """429: a rate limit of the route is exhausted (``reason`` names the limit)."""

    status = 429
    flag = "RL"
    headers = b""  # Retry-After and the RateLimit lines

    def __init__(self, reason: str = "", headers: bytes = b"") -> None:
        super().__init__(reason)
        if headers:
            self.headers = headers
