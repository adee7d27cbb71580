"""Upstream endpoints and the per-version groups that hand them out round robin."""

from __future__ import annotations

from proxy._fast import load
from proxy.config.schema import Pool

_routing = load("routing")


class Endpoint:
    """One upstream ``host:port`` of one version of a service; shared by every route using it."""

    __slots__ = ("host", "port", "address", "key", "service", "version", "pool", "connections")

    def __init__(self, host: str, port: int, service: str, version: str, pool: Pool) -> None:
        self.host = host  # without brackets, ready for socket calls
        self.port = port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.key = (host, port)  # the connection-pool key
        self.service = service
        self.version = version
        self.pool = pool  # the schema Pool in effect for the service
        # The EndpointPool of this endpoint's connections, looked up by the data plane on first use.
        self.connections = None

    def __repr__(self) -> str:
        return f"Endpoint({self.service}/{self.version} {self.address})"


# The group lives in proxy._fast.routing (compiled: an extension type the compiled decide reads).
EndpointGroup = _routing.EndpointGroup
