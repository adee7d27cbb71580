"""What workers tell the supervisor, and how the supervisor adds it up.

Each worker sends a ``WorkerReport`` once a second over its socket pair: length-
prefixed msgspec msgpack frames. The reports carry cumulative counters, so a lost
or late report loses nothing; the supervisor keeps the latest per worker and, when
a worker exits, folds its last report into ``retired`` so that summed counters never
go backwards (Prometheus counters must only grow).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from proxy.observe.counters import SlotTotals, Snapshot
from proxy.observe.stats import Stats

FRAME = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024


class WorkerReport(msgspec.Struct, array_like=True):
    worker: int
    pid: int
    counters: Snapshot
    stats: dict[str, Any]  # Stats.snapshot()
    connections: int  # open client connections
    upstream_active: int
    upstream_idle: int
    mirror: dict[str, int]
    routing: dict[str, int]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(WorkerReport)


def encode(report: WorkerReport) -> bytes:
    payload = _encoder.encode(report)
    return FRAME.pack(len(payload)) + payload


async def read_report(reader: asyncio.StreamReader) -> WorkerReport:
    """The next report; IncompleteReadError when the worker is gone."""
    (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
    if size > MAX_FRAME:
        raise ValueError(f"report of {size} bytes is too large")
    return _decoder.decode(await reader.readexactly(size))


# --- adding up ----------------------------------------------------------------


def _add_slots(a: SlotTotals, b: SlotTotals) -> SlotTotals:
    codes = dict(a.codes)
    for status, count in b.codes.items():
        codes[status] = codes.get(status, 0) + count
    buckets = tuple(x + y for x, y in zip(a.buckets, b.buckets, strict=True))
    seconds = a.seconds + b.seconds
    return SlotTotals(codes, buckets, seconds, a.bytes_in + b.bytes_in, a.bytes_out + b.bytes_out)


def merge_snapshots(snapshots: list[Snapshot], at: float) -> Snapshot:
    """One snapshot holding the sum of ``snapshots``, matched by (route, service, version) name."""
    totals: dict[tuple[str, str, str], SlotTotals] = {}
    connect: dict[tuple[str, str, str], int] = {}
    for snapshot in snapshots:
        for key, slot in zip(snapshot.keys, snapshot.slots, strict=True):
            seen = totals.get(key)
            totals[key] = slot if seen is None else _add_slots(seen, slot)
        for key, count in snapshot.connect_errors.items():
            connect[key] = connect.get(key, 0) + count
    # Slot 0 (no route) stays first, as in a single process.
    keys = sorted(totals, key=lambda key: (key != ("", "", ""), key))
    return Snapshot(at, tuple(keys), tuple(totals[key] for key in keys), connect)


def merge_stats(snapshots: list[dict[str, Any]]) -> Stats:
    """A ``Stats`` whose every counter is the sum over ``snapshots`` (Stats.snapshot() dicts)."""
    merged = Stats()
    for snapshot in snapshots:
        for name in Stats.FIELDS:
            value = snapshot.get(name)
            if value is None:
                continue
            current = getattr(merged, name)
            if isinstance(current, dict):
                for key, count in value.items():
                    current[key] = current.get(key, 0) + count
            elif isinstance(current, list):
                for i, count in enumerate(value[: len(current)]):
                    current[i] += count
            else:
                setattr(merged, name, current + value)
    return merged


def add_counts(dicts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in dicts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total
