"""The path index: from a request path to the routes that may match it, in config order.

Theory of operation
-------------------
Routes are tried in config order and the first that matches wins. Testing every
route per request costs O(routes); instead, every distinct request path falls in one
of a few classes whose candidate lists are computed here, once:

- ``exact[path]``: a path some route names exactly; its candidates are the routes
  whose path condition that path satisfies (exact, prefix, none or regex).
- ``nodes[key]``: ``key`` is a segment-boundary prefix of a configured prefix
  (``/a`` and ``/a/b`` for ``/a/b``); its candidates are the prefix routes at or
  above ``key`` plus the routes with no path condition or a regex one.
- ``root``: any other path: the routes with prefix ``/``, no path condition or a regex.

Each list is sorted by route index, so walking it keeps first-match semantics; a
candidate still has its other checks (host, method, headers, a regex path) to pass.
``proxy._fast.matching.lookup_prefix`` finds the deepest node of a path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from proxy._fast import load

_matching = load("matching")
_lookup_prefix = _matching.lookup_prefix
_has_path_prefix = _matching.has_path_prefix

T = TypeVar("T")


def node_keys(prefix: bytes) -> list[bytes]:
    """Every key of the walk to ``prefix``: its segment-boundary prefixes, then itself."""
    keys = [prefix[:i] for i in range(1, len(prefix)) if prefix[i] == 47]  # 47 = "/"
    keys.append(prefix)
    return keys


class PathIndex(Generic[T]):
    """``candidates(path)`` -> the items (routes) whose path condition may hold, in order."""

    __slots__ = ("exact", "nodes", "root")

    def __init__(self, items: Sequence[T], paths: Sequence[tuple[str, bytes] | None]) -> None:
        """``paths[i]`` is item i's path condition: None (any path) or (kind, value) with kind
        "exact", "prefix" (normalised) or "regex"."""
        always: set[int] = set()
        prefixes: dict[bytes, set[int]] = {}
        exacts: dict[bytes, set[int]] = {}
        for i, spec in enumerate(paths):
            if spec is None or spec[0] == "regex":
                always.add(i)
            elif spec[0] == "prefix":
                prefixes.setdefault(spec[1], set()).add(i)
            else:
                exacts.setdefault(spec[1], set()).add(i)

        def ordered(ids: set[int]) -> tuple[T, ...]:
            return tuple(items[i] for i in sorted(ids))

        def under(path: bytes) -> set[int]:
            ids = set(always)
            for prefix, owners in prefixes.items():
                if _has_path_prefix(path, prefix):
                    ids |= owners
            return ids

        self.root: tuple[T, ...] = ordered(always | prefixes.get(b"/", set()))
        self.nodes: dict[bytes, tuple[T, ...]] = {}
        for prefix in prefixes:
            if prefix != b"/":
                for key in node_keys(prefix):
                    if key not in self.nodes:
                        self.nodes[key] = ordered(under(key))
        self.exact: dict[bytes, tuple[T, ...]] = {
            path: ordered(under(path) | owners) for path, owners in exacts.items()
        }

    def candidates(self, path: bytes) -> tuple[T, ...]:
        found = self.exact.get(path)
        if found is None:
            found = _lookup_prefix(self.nodes, path, self.root)
        return found
