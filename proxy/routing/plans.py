"""Header plans: the header changes of one (route, version), computed at config compile.

A plan is what the data plane applies when it forwards a head: drop every header
whose lower-case name is in ``remove``, then append ``extra`` (pre-serialised
``Name: value\\r\\n`` lines). Ops are applied in this order: the metadata header strip
(requests), the route's ops, the version's ops, then the version header (responses);
within one ``HeaderOps``, ``remove`` then ``set`` then ``add``. So a version's ``set``
replaces what the route set or added, a version's ``remove`` drops it, and ``add``
appends. ``set`` also removes the header the client (or upstream) sent.

Framing and hop-by-hop headers cannot be changed by a plan: the data plane owns them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from proxy.config.paths import Path
from proxy.config.schema import HeaderOps
from proxy.routing.matchers import is_token
from proxy.routing.problems import Problems

# Only the data plane may touch these: changing them would break the message framing.
PROTECTED = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ]
)
# Bytes never allowed in a header value (http1's rule): controls other than tab, and DEL.
_VALUE_BAD = bytes(range(0, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"


class HeaderPlan(NamedTuple):
    remove: frozenset[bytes]  # lower-case names dropped from what is forwarded
    extra: bytes  # b"Name: value\r\n" lines appended


EMPTY_PLAN = HeaderPlan(frozenset(), b"")

# One op: ("remove" | "set" | "add", lower-case name, serialised line or b"").
Op = tuple[str, bytes, bytes]


def compile_ops(ops: HeaderOps, where: Path, problems: Problems) -> list[Op]:
    """Check one HeaderOps and turn it into ops; bad entries are reported and left out."""
    out: list[Op] = []
    for i, name in enumerate(ops.remove):
        key = _name(name, where + ("remove", i), problems)
        if key is not None:
            out.append(("remove", key, b""))
    for kind, table in (("set", ops.set), ("add", ops.add)):
        for name, value in table.items():
            op = header_line(kind, name, value, where + (kind, name), problems)
            if op is not None:
                out.append(op)
    return out


def header_line(kind: str, name: str, value: str, where: Path, problems: Problems) -> Op | None:
    """One "set" or "add" op writing ``name: value``, or None after adding a problem."""
    key = _name(name, where, problems)
    raw = value.encode("utf-8")
    if raw.translate(None, _VALUE_BAD) != raw:
        problems.add(where, "value contains a control character (CR, LF, NUL...)")
        return None
    if key is None:
        return None
    return (kind, key, name.encode("latin-1") + b": " + raw + b"\r\n")


def build_plan(op_lists: Iterable[Sequence[Op]]) -> HeaderPlan:
    """The plan of applying the op lists one after the other."""
    remove: set[bytes] = set()
    lines: list[tuple[bytes, bytes]] = []  # (lower-case name, line) in output order
    for ops in op_lists:
        for kind, key, line in ops:
            if kind != "add":
                remove.add(key)
                lines = [entry for entry in lines if entry[0] != key]
            if kind != "remove":
                lines.append((key, line))
    if not remove and not lines:
        return EMPTY_PLAN
    return HeaderPlan(frozenset(remove), b"".join(line for _, line in lines))


def _name(name: str, where: Path, problems: Problems) -> bytes | None:
    if not is_token(name):
        problems.add(where, f"not a valid header name: {name!r}")
        return None
    if name.lower() in PROTECTED:
        problems.add(where, f"{name} is managed by the proxy and cannot be changed")
        return None
    return name.lower().encode("latin-1")
