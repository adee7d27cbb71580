"""Plain integer counters the data plane increments (``Stats``).

The class lives in ``proxy._fast.exchange`` so that the compiled exchange increments C fields;
``Stats.FIELDS`` names every counter.
"""

from __future__ import annotations

from proxy._fast import exchange as _exchange

Stats = _exchange.Stats

__all__ = ["Stats"]
