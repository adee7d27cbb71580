"""Response header lines of the policies, as bytes ready to go into an error response.

- ``WWW-Authenticate`` (RFC 6750 section 3): ``Bearer realm="..."``, plus ``error`` and
  ``error_description`` when a token was presented but is not valid (a request without
  any token gets no error code, as the RFC asks).
- ``Retry-After`` (RFC 9110 section 10.2.3): whole seconds, rounded up, at least 1.
- ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-10): structured
  field lists, ``"name";q=QUOTA;w=WINDOW`` and ``"name";r=REMAINING;t=SECONDS``. A token
  bucket of ``rate`` per ``per`` is advertised as its sustained quota (``q`` requests per ``w``
  seconds); ``r`` is what the bucket holds now and ``t`` when the next request would pass.

Every line ends with CRLF. Lines that depend only on the config are built once.
"""

from __future__ import annotations

import math

CRLF = b"\r\n"


def _quoted(text: str) -> bytes:
    """An RFC 9110 quoted-string / structured-field string (printable ASCII, escaped)."""
    safe = "".join(c if 0x20 <= ord(c) < 0x7F else "?" for c in text)
    return b'"' + safe.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"'


def www_authenticate(realm: str, error: str | None = None, description: str | None = None) -> bytes:
    """One ``WWW-Authenticate: Bearer ...`` line."""
    parts = [b"Bearer realm=" + _quoted(realm)]
    if error is not None:
        parts.append(b"error=" + _quoted(error))
        if description:
            parts.append(b"error_description=" + _quoted(description))
    return b"WWW-Authenticate: " + b", ".join(parts) + CRLF


def whole_seconds(seconds: float) -> int:
    """Seconds rounded up, at least 1 (what a client should wait before trying again)."""
    return max(1, math.ceil(seconds - 1e-9))


def retry_after(seconds: float) -> bytes:
    return b"Retry-After: %d\r\n" % whole_seconds(seconds)


def policy_item(name: str, rate: float, per: float) -> bytes:
    """``"name";q=Q;w=W``: the sustained quota of a bucket of ``rate`` per ``per`` seconds.

    ``w`` is a whole number of seconds (at least 1); ``q`` the whole requests allowed in it.
    """
    per_second = rate / per
    window = max(1, round(per))
    if per_second * window < 1:  # e.g. 1 per 90s: say "1 per 90", not "0 per 90"
        window = math.ceil(1 / per_second - 1e-9)
    quota = max(1, math.floor(per_second * window + 1e-9))
    return _quoted(name) + b";q=%d;w=%d" % (quota, window)


def ratelimit_policy(items: list[bytes]) -> bytes:
    return b"RateLimit-Policy: " + b", ".join(items) + CRLF


def ratelimit(name: str, remaining: int, seconds: float) -> bytes:
    """``RateLimit: "name";r=R;t=T`` for one limit."""
    return b"RateLimit: " + _quoted(name) + b";r=%d;t=%d\r\n" % (max(0, remaining), whole_seconds(seconds))


def limited(policy: bytes, name: str, wait: float) -> bytes:
    """The lines of a 429: Retry-After, the policy of the limit and its state (nothing left)."""
    return retry_after(wait) + policy + ratelimit(name, 0, wait)
