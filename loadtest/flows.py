"""What the locust user flows count: answers per version (from the X-Graylane-Version response
header) for each kind of user, gray users answered off the gray version, and sticky users who
changed version. Plain Python, so it is tested without locust; ``loadtest/locustfile.py`` uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

VERSION_HEADER = "X-Graylane-Version"
NO_VERSION = "(none)"
GRAY_VERSION = "v2"

_gray_ids = itertools.count(1)
_sticky_ids = itertools.count(1)


def gray_user_id() -> str:
    """A new gray user's X-User-ID (graylane's canary rule: ``^user_gray_\\d+$``)."""
    return f"user_gray_{next(_gray_ids)}"


def sticky_user_id() -> str:
    """A new ordinary user's X-User-ID (sticky: should keep one version while weights stay)."""
    return f"user_{next(_sticky_ids)}"


class VersionTally:
    """Counts per flow and version; ``export``/``merge`` carry them from locust workers to the master."""

    def __init__(self, gray_version: str = GRAY_VERSION) -> None:
        self.gray_version = gray_version
        self.counts: dict[str, dict[str, int]] = {}
        self.gray_off = 0  # gray users' answers from another version
        self.flips = 0  # sticky users' answers from another version than their first
        self._first: dict[str, str] = {}

    def record(
        self, flow: str, version: str | None, *, user_id: str | None = None, gray: bool = False
    ) -> None:
        version = version or NO_VERSION
        per_flow = self.counts.setdefault(flow, {})
        per_flow[version] = per_flow.get(version, 0) + 1
        if gray and version != self.gray_version:
            self.gray_off += 1
        if user_id is not None and not gray:
            first = self._first.setdefault(user_id, version)
            if first != version:
                self.flips += 1

    def export(self) -> dict[str, object]:
        """What one worker sends (and forgets): counts and anomalies since the last report."""
        data: dict[str, object] = {"counts": self.counts, "gray_off": self.gray_off, "flips": self.flips}
        self.counts, self.gray_off, self.flips = {}, 0, 0
        return data

    def merge(self, data: Mapping[str, object]) -> None:
        counts = data.get("counts") or {}
        for flow, versions in counts.items():  # type: ignore[union-attr]
            per_flow = self.counts.setdefault(flow, {})
            for version, n in versions.items():
                per_flow[version] = per_flow.get(version, 0) + int(n)
        self.gray_off += int(data.get("gray_off") or 0)  # type: ignore[call-overload]
        self.flips += int(data.get("flips") or 0)  # type: ignore[call-overload]

    def render(self) -> str:
        """A text table: one line per flow with each version's count and share."""
        lines = [f"answers per version ({VERSION_HEADER}):"]
        for flow in sorted(self.counts):
            versions = self.counts[flow]
            total = sum(versions.values())
            shares = "  ".join(f"{v} {n} ({100 * n / total:.1f}%)" for v, n in sorted(versions.items()))
            lines.append(f"  {flow:<10} {total:>8}  {shares}")
        lines.append(f"gray users answered off {self.gray_version}: {self.gray_off}")
        lines.append(f"sticky users who changed version: {self.flips}")
        return "\n".join(lines)
