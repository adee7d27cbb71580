"""Request-metadata labels: a JSON object of strings carried in one request header.

``X-Request-Metadata: {"tenant": "acme", "region": "eu"}`` gives the labels
``{"tenant": "acme", "region": "eu"}`` that routes and content rules can match. A
header that is not valid JSON, not an object, has a value that is not a string or is
larger than ``metadata.max_bytes`` is ignored (the request is routed as if it had no
labels) and counted; it never fails the request.
"""

from __future__ import annotations

import msgspec

from proxy.config.schema import Metadata
from proxy.http.request import RequestHead
from proxy.routing.stats import RoutingStats


class LabelParser:
    """Callable ``(RequestHead) -> dict[str, str] | None``; one per route table."""

    __slots__ = ("header", "max_bytes", "stats", "_decode")

    def __init__(self, settings: Metadata, stats: RoutingStats) -> None:
        self.header = settings.header.lower().encode("latin-1")
        self.max_bytes = settings.max_bytes
        self.stats = stats
        # One typed decode validates "object of strings" in the same pass as the JSON.
        self._decode = msgspec.json.Decoder(dict[str, str]).decode

    def __call__(self, req: RequestHead) -> dict[str, str] | None:
        raw = req.header(self.header)
        if raw is None:
            return None
        return self.parse(raw)

    def parse(self, raw: bytes) -> dict[str, str] | None:
        """The labels in one header value, or None (counted) when it must be ignored."""
        if len(raw) > self.max_bytes:
            self.stats.metadata_invalid += 1
            self.stats.metadata_too_large += 1
            return None
        try:
            return self._decode(raw)
        except msgspec.DecodeError:  # ValidationError (wrong shape) is a DecodeError too
            self.stats.metadata_invalid += 1
            return None
