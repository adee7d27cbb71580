# cython: annotation_typing=False
"""Stable 64-bit hashing for sticky version choice.

Theory of operation
-------------------
A sticky key (a user id, a cookie, a client address) must land in the same bucket
in every worker process, every replica and after every restart, so Python's
``hash()`` (randomised per process) cannot be used. graylane uses 64-bit FNV-1a
over ``salt + b"\\0" + key`` followed by murmur3's ``fmix64`` finaliser: FNV-1a alone
mixes its last bytes poorly (keys that differ only at the end would share low bits,
and ``hash % 10000`` reads the low bits), fmix64 spreads every input bit over every
output bit.

FNV-1a is a streaming hash, so the state after ``salt + b"\\0"`` is computed once per
route when the config is compiled (``salted_state``); a request only hashes its key
(``hash_key``). ``stable_hash(salt, key)`` is the one-shot form and defines the result.

This file is plain Python and is also compiled by Cython as ``_hashing_c`` with the
C types declared in ``_hashing_c.pxd``. In C the arithmetic is on ``unsigned long
long`` and wraps modulo 2**64 by itself; the ``& MASK64`` that the Python twin needs
is then a no-op. Both must return identical results (tests compare them).
"""

from __future__ import annotations

FNV_OFFSET = 0xCBF29CE484222325  # 64-bit FNV offset basis
FNV_PRIME = 0x100000001B3  # 64-bit FNV prime
MASK64 = 0xFFFFFFFFFFFFFFFF


def fnv1a64(data: bytes, h: int = 0xCBF29CE484222325) -> int:
    """64-bit FNV-1a of ``data``, continuing from state ``h`` (the offset basis by default)."""
    # Constants as locals: the .pxd types them, so Cython keeps the loop in C.
    prime = 0x100000001B3
    mask = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        h = ((h ^ byte) * prime) & mask
    return h


def fmix64(k: int) -> int:
    """murmur3's 64-bit finaliser: every input bit affects every output bit."""
    c1 = 0xFF51AFD7ED558CCD
    c2 = 0xC4CEB9FE1A85EC53
    mask = 0xFFFFFFFFFFFFFFFF
    k ^= k >> 33
    k = (k * c1) & mask
    k ^= k >> 33
    k = (k * c2) & mask
    k ^= k >> 33
    return k


def salted_state(salt: bytes) -> int:
    """The FNV-1a state after ``salt + b"\\0"``: computed once per route at config compile."""
    return fnv1a64(b"\0", fnv1a64(salt, 0xCBF29CE484222325))


def hash_key(state: int, key: bytes) -> int:
    """The stable hash of ``key`` under the salt whose ``salted_state`` is ``state``."""
    return fmix64(fnv1a64(key, state))


def stable_hash(salt: bytes, key: bytes) -> int:
    """Stable 64-bit hash of ``key`` salted with ``salt``: equal in every process and on every machine."""
    return fmix64(fnv1a64(key, salted_state(salt)))
