"""Response header lines of the policies, and where a token is found in a request."""

from __future__ import annotations

import pytest
from policy_support import head

from proxy.policy import headers
from proxy.policy.tokens import bearer, cookie_source, header_source, token_source


def test_www_authenticate() -> None:
    assert headers.www_authenticate("graylane") == b'WWW-Authenticate: Bearer realm="graylane"\r\n'
    assert headers.www_authenticate("shop", "invalid_token", 'say "hi"') == (
        b'WWW-Authenticate: Bearer realm="shop", error="invalid_token", error_description="say \\"hi\\""\r\n'
    )
    assert b"\r\n" not in headers.www_authenticate("a\r\nb")[:-2]


@pytest.mark.parametrize(("seconds", "header"), [(0.001, 1), (1.0, 1), (1.2, 2), (59.9, 60), (0, 1)])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: int) -> None:
    assert headers.retry_after(seconds) == b"Retry-After: %d\r\n" % header


@pytest.mark.parametrize(
    ("rate", "per", "item"),
    [
        (100, 1, b'"api";q=100;w=1'),
        (1000, 60, b'"api";q=1000;w=60'),
        (0.5, 1, b'"api";q=1;w=2'),
        (1, 90, b'"api";q=1;w=90'),
        (10, 0.1, b'"api";q=100;w=1'),
    ],
)
def test_the_policy_item_states_the_sustained_quota(rate: float, per: float, item: bytes) -> None:
    assert headers.policy_item("api", rate, per) == item


def test_a_429_has_retry_after_policy_and_state() -> None:
    policy = headers.ratelimit_policy([headers.policy_item("per-user", 100, 1)])
    assert headers.limited(policy, "per-user", 0.25) == (
        b'Retry-After: 1\r\nRateLimit-Policy: "per-user";q=100;w=1\r\nRateLimit: "per-user";r=0;t=1\r\n'
    )
    assert headers.ratelimit("x", 7, 3.5) == b'RateLimit: "x";r=7;t=4\r\n'


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc.def.ghi", b"abc.def.ghi"),
        ("bearer abc", b"abc"),
        ("BEARER   abc  ", b"abc"),
        ("Bearer ", b""),
        ("Bearer", b""),
        ("Basic dXNlcg==", None),
        ("Bearerabc", None),
    ],
)
def test_the_bearer_token(value: str, token: bytes | None) -> None:
    assert bearer(head(headers=[("Authorization", value)])) == token


def test_no_authorization_or_two_of_them() -> None:
    assert bearer(head()) is None
    assert bearer(head(headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")])) == b""


def test_a_named_header_or_cookie() -> None:
    fetch = header_source("X-Token")
    assert fetch(head(headers=[("X-Token", "abc")])) == b"abc"
    assert fetch(head(headers=[("X-Token", "Bearer abc")])) == b"abc"
    assert fetch(head()) is None
    cookie = cookie_source("session")
    assert cookie(head(headers=[("Cookie", "a=1"), ("Cookie", "session=tok; b=2")])) == b"tok"
    assert cookie(head(headers=[("Cookie", "a=1")])) is None
    assert cookie(head()) is None


def test_token_source_names_the_header_it_reads() -> None:
    assert token_source(None, None)[1:] == ("Authorization: Bearer", b"authorization")
    assert token_source("Authorization", None)[1:] == ("Authorization: Bearer", b"authorization")
    assert token_source("X-Token", None)[1:] == ("header X-Token", b"x-token")
    assert token_source(None, "sid")[1:] == ("cookie sid", None)
