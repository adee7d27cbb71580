"""Upstream endpoints and the per-version groups that hand them out round robin."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from proxy.config.schema import Pool


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


class EndpointGroup:
    """The endpoints of one version of a service.

    ``next`` is a bound ``__next__`` of an endpoint cycle (round robin at C speed), or
    None when the version has no endpoint; ``set_endpoints`` swaps it in one
    assignment, so health checking can change a group while requests read it.
    """

    __slots__ = ("service", "version", "version_id", "endpoints", "next")

    def __init__(self, service: str, version: str, version_id: int, endpoints: Sequence[Endpoint]) -> None:
        self.service = service
        self.version = version
        self.version_id = version_id  # index in RouteTable.versions
        self.endpoints: tuple[Endpoint, ...] = ()
        self.next: Callable[[], Endpoint] | None = None
        self.set_endpoints(endpoints)

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = tuple(endpoints)
        if not self.endpoints:
            self.next = None
        elif len(self.endpoints) == 1:
            self.next = itertools.repeat(self.endpoints[0]).__next__
        else:
            self.next = itertools.cycle(self.endpoints).__next__
