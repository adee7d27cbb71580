"""Routing: which route, which version and which endpoint answers a request.

``RouteTable(config)`` compiles a config once; ``table.decide(req, client_ip)`` returns
a ``Decision`` per request (or raises NoRoute / NoHealthyUpstream).
"""

from __future__ import annotations

from proxy.routing.decision import Decision, Target
from proxy.routing.endpoints import Endpoint, EndpointGroup
from proxy.routing.plans import EMPTY_PLAN, HeaderPlan
from proxy.routing.stats import RoutingStats
from proxy.routing.table import RouteTable

__all__ = [
    "EMPTY_PLAN",
    "Decision",
    "Endpoint",
    "EndpointGroup",
    "HeaderPlan",
    "RouteTable",
    "RoutingStats",
    "Target",
]
