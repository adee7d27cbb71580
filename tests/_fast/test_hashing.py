"""proxy._fast.hashing: the stable hash behind sticky version choice.

A sticky user must land on the same version in every worker and replica, so the
hash is pinned here: changing these numbers moves users between versions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._fast import compiled, load, pure

ROOT = Path(__file__).resolve().parents[2]
TWIN = pure("hashing")
FAST = compiled("hashing")
FORMS = [pytest.param(TWIN, id="pure")] + ([pytest.param(FAST, id="compiled")] if FAST is not None else [])


@pytest.mark.parametrize("h", FORMS)
def test_fnv1a64_reference_vectors(h):
    # From the FNV reference test suite (64-bit FNV-1a).
    assert h.fnv1a64(b"") == 0xCBF29CE484222325
    assert h.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert h.fnv1a64(b"foobar") == 0x85944171F73967E8


@pytest.mark.parametrize("h", FORMS)
def test_fmix64_reference_points(h):
    assert h.fmix64(0) == 0  # fmix64 maps 0 to 0 and is a bijection
    assert h.fmix64(1) == 0xB456BCFC34C2CB2C
    assert h.fmix64(0xFFFFFFFFFFFFFFFF) == 0x64B5720B4B825F21


@pytest.mark.parametrize("h", FORMS)
def test_stable_hash_is_pinned(h):
    assert h.stable_hash(b"", b"") == 13331581593930102267
    assert h.stable_hash(b"route", b"user_1") == 12693309410986797054
    assert h.stable_hash(b"checkout", b"user_12345") % 10000 == 4294


@pytest.mark.parametrize("h", FORMS)
def test_salt_and_key_are_separated(h):
    # The b"\0" between salt and key: ("ab", "c") and ("a", "bc") must not collide by construction.
    assert h.stable_hash(b"ab", b"c") != h.stable_hash(b"a", b"bc")
    assert h.stable_hash(b"a", b"x") != h.stable_hash(b"b", b"x")


@given(salt=st.binary(max_size=40), key=st.binary(max_size=200))
def test_streaming_form_equals_one_shot(salt, key):
    h = load("hashing")
    assert h.hash_key(h.salted_state(salt), key) == h.stable_hash(salt, key)
    assert 0 <= h.stable_hash(salt, key) < 2**64


@pytest.mark.twins
@pytest.mark.skipif(FAST is None, reason="proxy._fast._hashing_c is not built")
@given(salt=st.binary(max_size=40), key=st.binary(max_size=300), state=st.integers(0, 2**64 - 1))
def test_twins_agree(salt, key, state):
    assert FAST.stable_hash(salt, key) == TWIN.stable_hash(salt, key)
    assert FAST.fnv1a64(key, state) == TWIN.fnv1a64(key, state)
    assert FAST.fmix64(state) == TWIN.fmix64(state)
    assert FAST.salted_state(salt) == TWIN.salted_state(salt)
    assert FAST.hash_key(state, key) == TWIN.hash_key(state, key)


def test_same_result_in_another_process_with_another_hash_seed():
    # Python's hash() changes with PYTHONHASHSEED; the sticky hash must not.
    code = "from proxy._fast import load; print(load('hashing').stable_hash(b'route', b'user_42'))"
    results = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=True
        )
        results.add(int(out.stdout))
    assert results == {load("hashing").stable_hash(b"route", b"user_42")}


def test_buckets_are_spread_evenly():
    # 20,000 sequential user ids into 10 deciles of the 10,000 buckets: each near 2,000.
    h = load("hashing")
    state = h.salted_state(b"route")
    counts = [0] * 10
    for i in range(20_000):
        counts[h.hash_key(state, b"user_%d" % i) % 10000 // 1000] += 1
    assert all(1800 < count < 2200 for count in counts), counts
