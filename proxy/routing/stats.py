"""Counters the route table keeps: plain ints, read by the metrics exposition at scrape time."""

from __future__ import annotations


class RoutingStats:
    __slots__ = ("metadata_invalid", "metadata_too_large", "empty_version_fallbacks")

    def __init__(self) -> None:
        # Metadata headers ignored for any reason (bad JSON, not an object of strings, too large).
        self.metadata_invalid = 0
        # Of those, the ones ignored because they were larger than metadata.max_bytes.
        self.metadata_too_large = 0
        # Requests whose chosen version had no endpoint and went to the stable version.
        self.empty_version_fallbacks = 0

    def carry_over(self, previous: RoutingStats) -> None:
        """Add the counts of the table this one replaces: counters never go back on a reload."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(previous, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
