"""Every example in conf/ runs and does what its comments say.

Each example is loaded with PyYAML, its listener moved to 127.0.0.1:0 and its endpoints to
local backends (``e2e_support.example``); everything else is used as written. demo.yaml is
covered by tests/demo; conf/weighted.yaml's promise (100k requests within a point of 70/30)
is in test_split_e2e.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_support import (
    CONF_DIR,
    assignments,
    blast,
    example,
    get,
    raw_get,
    reload,
    serving,
    versions_of,
)

from proxy.testing import Backend, GraylaneProcess

pytestmark = pytest.mark.integration

# Exercised in tests/demo, tests/rollout and tests/policy.
COVERED_ELSEWHERE = {"demo.yaml", "rollout.yaml", "jwt.yaml", "ratelimit.yaml"}


def test_every_example_has_a_test_here():
    here = Path(__file__).read_text()
    for path in sorted(CONF_DIR.glob("*.yaml")):
        if path.name not in COVERED_ELSEWHERE:
            assert f'"{path.name}"' in here, f"conf/{path.name} has no end-to-end test"


@pytest.mark.parametrize("name", ["basic.yaml", "basic.json"])
def test_basic_sends_everything_to_the_one_version(backend, graylane, name):
    v1 = backend("v1")
    proxy = graylane(example(name, {"v1": v1}))
    for path in ["/", "/a/b?c=d"]:
        resp = get(proxy, path)
        assert (resp.status, resp.get("X-Backend-Version")) == (200, "v1")
    assert [r.target for r in v1.requests] == ["/", "/a/b?c=d"]


def test_weighted_splits_70_30_per_request(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(example("weighted.yaml", {"v1": v1, "v2": v2}))
    total = 4000
    tally = blast(proxy.address, [raw_get("/status/204")] * total)
    assert sum(tally.values()) == total
    share = len(v1.requests) / total
    assert abs(share - 0.70) <= 0.03, (len(v1.requests), len(v2.requests))
    assert len(v1.requests) + len(v2.requests) == total


@pytest.fixture(scope="module")
def _header_gray() -> Iterator[tuple[dict[str, Backend], GraylaneProcess]]:
    with serving(lambda backends: example("header-gray.yaml", backends), "v1", "v2") as running:
        yield running


@pytest.fixture
def header_gray(_header_gray) -> tuple[dict[str, Backend], GraylaneProcess]:
    """conf/header-gray.yaml serving, shared by the module; v1 and v2 cleared."""
    for origin in _header_gray[0].values():
        origin.clear()
    return _header_gray


@pytest.fixture(scope="module")
def _metadata_labels() -> Iterator[tuple[dict[str, Backend], GraylaneProcess]]:
    with serving(lambda backends: example("metadata-labels.yaml", backends), "v1", "v2") as running:
        yield running


@pytest.fixture
def metadata_labels(_metadata_labels) -> tuple[tuple[Backend, Backend], GraylaneProcess]:
    """conf/metadata-labels.yaml serving, shared by the module; v1 and v2 cleared."""
    backends, proxy = _metadata_labels
    for origin in backends.values():
        origin.clear()
    return (backends["v1"], backends["v2"]), proxy


@pytest.mark.parametrize(
    ("headers", "version"),
    [
        ({"X-User-ID": "user_gray_7"}, "v2"),
        ({"X-User-ID": "user_gray_123456"}, "v2"),
        ({"X-User-ID": "user_7"}, "v1"),
        ({"X-User-ID": "user_gray_"}, "v1"),
        ({"X-User-ID": "xuser_gray_7"}, "v1"),
        ({"X-Canary": "always"}, "v2"),
        ({"X-Canary": "never"}, "v1"),
        ({"Cookie": "canary=1"}, "v2"),
        ({"Cookie": "lang=en; canary=1; x=y"}, "v2"),
        ({"Cookie": "canary=0"}, "v1"),
        ({}, "v1"),  # everyone else stays on stable
    ],
)
def test_header_gray_sends_chosen_users_to_v2(header_gray, headers, version):
    backends, proxy = header_gray
    assert versions_of(proxy, 30, "/", headers) == Counter({version: 30})
    assert len(backends[version].requests) == 30


@pytest.mark.parametrize(
    ("labels", "version"),
    [
        ({"user_id": "42", "device_type": "ios", "region": "eu"}, "v2"),
        ({"device_type": "ios", "region": "eu"}, "v2"),
        ({"device_type": "ios", "region": "us"}, "v1"),
        ({"device_type": "android", "region": "eu"}, "v1"),
        ({"region": "eu"}, "v1"),
        (None, "v1"),
    ],
)
def test_metadata_labels_send_ios_users_in_the_eu_to_v2(metadata_labels, labels, version):
    (v1, v2), proxy = metadata_labels
    headers = {} if labels is None else {"X-Request-Metadata": json.dumps(labels)}
    assert versions_of(proxy, 20, "/", headers) == Counter({version: 20})
    # strip: true -> the header never reaches a backend.
    assert len(v1.requests + v2.requests) == 20
    for seen in v1.requests + v2.requests:
        assert seen.header_values("X-Request-Metadata") == []


def test_metadata_labels_over_max_bytes_are_ignored(metadata_labels):
    (v1, v2), proxy = metadata_labels
    big = json.dumps({"device_type": "ios", "region": "eu", "pad": "x" * 4200})  # max_bytes: 4KiB
    resp = get(proxy, "/", {"X-Request-Metadata": big})
    assert (resp.status, resp.get("X-Backend-Version")) == (200, "v1")
    assert v1.requests[-1].header_values("X-Request-Metadata") == []


SESSIONS = 1000


def _session_requests(sessions: range, repeats: int) -> list[bytes]:
    return [raw_get("/status/204", {"Cookie": f"session=s{i}"}) for _ in range(repeats) for i in sessions]


def _on_v2(v1, v2) -> dict[str, str]:
    seen = assignments([v1, v2], lambda r: r.header("Cookie"))
    assert all(len(versions) == 1 for versions in seen.values()), "a session changed version"
    return {key: versions.pop() for (_, key), versions in seen.items()}


def test_sticky_keeps_sessions_80_20_and_raising_v2_only_moves_users_to_v2(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    text = example("sticky.yaml", {"v1": v1, "v2": v2})
    proxy = graylane(text)
    blast(proxy.address, _session_requests(range(SESSIONS), 3))
    before = _on_v2(v1, v2)
    assert len(before) == SESSIONS
    share = sum(1 for v in before.values() if v == "v2") / SESSIONS
    assert 0.15 <= share <= 0.25, share  # 80/20 by session, > 3.9 standard deviations

    # Raise v2 to 50%: users only move from v1 to v2.
    doc = yaml.safe_load(text)
    doc["routes"][0]["split"] = [{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}]
    reload(proxy, yaml.safe_dump(doc))
    v1.clear()
    v2.clear()
    blast(proxy.address, _session_requests(range(SESSIONS), 2))
    after = _on_v2(v1, v2)
    assert [key for key, v in before.items() if v == "v2" and after[key] != "v2"] == []
    share = sum(1 for v in after.values() if v == "v2") / SESSIONS
    assert 0.44 <= share <= 0.56, share

    # Another salt picks other users first, at the same weights.
    doc["routes"][0]["sticky"]["salt"] = "release-2026-12"
    reload(proxy, yaml.safe_dump(doc))
    v1.clear()
    v2.clear()
    blast(proxy.address, _session_requests(range(SESSIONS), 1))
    resalted = _on_v2(v1, v2)
    moved = sum(1 for key in after if after[key] != resalted[key])
    assert moved > SESSIONS // 4, f"only {moved} sessions changed version with a new salt"


def test_sticky_without_a_session_cookie_is_split_per_request(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(example("sticky.yaml", {"v1": v1, "v2": v2}))
    tally = blast(proxy.address, [raw_get("/status/204")] * 1000, connections=2)
    assert sum(tally.values()) == 1000
    assert 100 <= len(v2.requests) <= 300, len(v2.requests)


# --- mirror.yaml ------------------------------------------------------------------


def test_mirror_copies_about_half_the_requests_to_v2_and_answers_from_v1(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(example("mirror.yaml", {"v1": v1, "v2": v2}))
    total = 400
    tally = blast(proxy.address, [raw_get("/mirrored")] * total, connections=2)
    assert tally == Counter({(200, "v1"): total}), "the client only ever sees v1's answers"
    assert len(v1.requests) == total
    v2.wait_until(lambda b: len(b.requests) >= 0.35 * total, timeout=2)
    assert len(v2.requests) <= 0.65 * total
    assert {r.target for r in v2.requests} == {"/mirrored"}


def test_a_slow_mirror_never_slows_the_client(backend, graylane):
    v1, v2 = backend("v1"), backend("v2", delay=5.0)
    proxy = graylane(example("mirror.yaml", {"v1": v1, "v2": v2}))
    started = time.monotonic()
    for _ in range(40):
        resp = get(proxy, "/slow-mirror")
        assert (resp.status, resp.get("X-Backend-Version")) == (200, "v1")
    assert time.monotonic() - started < 2.5, "40 requests took as long as the mirror's delay"
    v2.wait_until(lambda b: len(b.requests) >= 5, timeout=2)  # the copies did go out


def test_a_down_mirror_never_fails_the_client(backend, graylane):
    v1, v2 = backend("v1"), backend("v2")
    proxy = graylane(example("mirror.yaml", {"v1": v1, "v2": v2}))
    assert blast(proxy.address, [raw_get("/")] * 40, connections=1) == Counter({(200, "v1"): 40})
    v2.wait_until(lambda b: len(b.requests) >= 5, timeout=2)  # copies go out while v2 is up
    v2.stop()
    tally = blast(proxy.address, [raw_get("/")] * 200, connections=2)
    assert tally == Counter({(200, "v1"): 200})
    assert proxy.running
