"""The client side of the proxy; the exchange lives in ``proxy._fast.exchange`` (compiled when built)."""

from __future__ import annotations

from proxy._fast import exchange as _exchange

Downstream = _exchange.Downstream
has_dot_segment = _exchange.has_dot_segment

__all__ = ["Downstream", "has_dot_segment"]
