"""State shared by every connection of one server process (``ServerContext``).

It lives in ``proxy._fast.exchange`` so that the compiled exchange reads it as C fields.
"""

from __future__ import annotations

from proxy._fast import exchange as _exchange

ServerContext = _exchange.ServerContext

__all__ = ["ServerContext"]
