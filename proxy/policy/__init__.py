"""Gateway policies of a route: JWT authentication and rate limits (local or through Redis).

``PolicyRuntime`` (one per worker) compiles a config into a ``PolicyTable``; its
``RoutePolicy`` per route is what the data plane runs (see ``route_policy``).
"""

from __future__ import annotations

from proxy.policy.jwt import Identity, JwtAuth, KeysPending
from proxy.policy.route_policy import RoutePolicy
from proxy.policy.runtime import PolicyRuntime, PolicyTable

__all__ = ["Identity", "JwtAuth", "KeysPending", "PolicyRuntime", "PolicyTable", "RoutePolicy"]
