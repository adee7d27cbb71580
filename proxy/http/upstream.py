"""One connection to an upstream endpoint; it lives in ``proxy._fast.exchange`` with its owner."""

from __future__ import annotations

from proxy._fast import exchange as _exchange

Upstream = _exchange.Upstream

__all__ = ["Upstream"]
