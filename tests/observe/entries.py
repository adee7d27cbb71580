"""Access-log entries for tests: the tuple the data plane hands the access log."""

from __future__ import annotations

from typing import Any

T0 = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


def entry(**changes: Any) -> tuple:
    """A successful request's entry; keyword arguments replace fields by name."""
    fields = {
        "time_unix": T0,
        "request_id": b"5f3a9c01000000a1",
        "client": "10.1.2.3",
        "method": b"GET",
        "path": b"/api/items",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 1234,
        "duration": 0.002345,
        "upstream_duration": 0.0021,
        "route": "shop",
        "version": "v2",
        "endpoint": "10.0.2.1:8080",
        "labels": {"tier": "gold"},
        "sticky_hash": 0x00AB_CDEF_0123_4567,
        "flags": "-",
    }
    unknown = set(changes) - set(fields)
    assert not unknown, unknown
    fields.update(changes)
    return tuple(fields.values())
