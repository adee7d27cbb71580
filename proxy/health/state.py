"""Which endpoints of each version may get traffic, pushed into the route table's groups.

An endpoint is usable unless the active checks found it unhealthy or outlier detection
ejected it. ``EndpointHealth`` keeps both marks by ``EndpointKey`` (service, version,
address), so they outlive route tables, and writes each version's usable endpoints
into its ``EndpointGroup`` with ``set_endpoints`` (one assignment; requests read it
between two of them). A version left with no usable endpoint gets an empty group:
the route table then sends its share to the stable version (``Target.fallback``), or
answers 503 where ``on_empty_version`` says so or for the stable version itself.

``attach(table)`` takes a freshly compiled table (whose groups still hold every
endpoint) and applies the marks to it; call it for every new table, before requests
can see it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from proxy.routing.endpoints import Endpoint, EndpointGroup

EndpointKey = tuple[str, str, str]  # (service, version, address)


class EndpointHealth:
    def __init__(self) -> None:
        self.unhealthy: dict[EndpointKey, str] = {}  # key -> what the last probe said
        self.ejected: set[EndpointKey] = set()
        self._groups: dict[tuple[str, str], EndpointGroup] = {}
        self._all: dict[tuple[str, str], tuple[Endpoint, ...]] = {}  # every endpoint, config order
        self._stable: dict[str, str] = {}  # service -> stable version
        self._on_empty: dict[str, str] = {}  # service -> on_empty_version

    def attach(self, table: Any) -> None:
        """Take over the groups of a new route table and apply the marks to them."""
        members: dict[tuple[str, str], list[Endpoint]] = {(s, v): [] for s, v in table.versions}
        for endpoint in table.endpoints:
            members[(endpoint.service, endpoint.version)].append(endpoint)
        self._all = {group: tuple(endpoints) for group, endpoints in members.items()}
        self._groups = {(s, v): table.group(s, v) for s, v in table.versions}
        config = table.config
        self._stable = {
            name: service.stable if service.stable is not None else next(iter(service.versions))
            for name, service in config.services.items()
            if service.versions
        }
        self._on_empty = {name: service.on_empty_version for name, service in config.services.items()}
        known = {(e.service, e.version, e.address) for e in table.endpoints}
        self.ejected &= known
        self.unhealthy = {key: why for key, why in self.unhealthy.items() if key in known}
        for group in self._groups:
            self._apply(group)

    def endpoint_counts(self) -> dict[tuple[str, str], int]:
        """Endpoints per (service, version) in the attached table."""
        return {group: len(endpoints) for group, endpoints in self._all.items()}

    def all_keys(self) -> Iterable[tuple[EndpointKey, Endpoint]]:
        for endpoints in self._all.values():
            for endpoint in endpoints:
                yield (endpoint.service, endpoint.version, endpoint.address), endpoint

    # --- marks ----------------------------------------------------------------------------

    def set_healthy(self, key: EndpointKey, healthy: bool, detail: str = "") -> None:
        """The active checks' verdict on one endpoint."""
        if healthy:
            changed = self.unhealthy.pop(key, None) is not None
        else:
            changed = key not in self.unhealthy
            self.unhealthy[key] = detail
        if changed:
            self._apply(key[:2])

    def set_ejected(self, key: EndpointKey, ejected: bool) -> None:
        """Outlier detection's verdict on one endpoint."""
        if ejected == (key in self.ejected):
            return
        if ejected:
            self.ejected.add(key)
        else:
            self.ejected.discard(key)
        self._apply(key[:2])

    def usable(self, endpoint: Endpoint) -> bool:
        key = (endpoint.service, endpoint.version, endpoint.address)
        return key not in self.unhealthy and key not in self.ejected

    def _apply(self, group_key: tuple[str, str]) -> None:
        group = self._groups.get(group_key)
        if group is None:
            return
        usable = [endpoint for endpoint in self._all[group_key] if self.usable(endpoint)]
        if tuple(usable) != group.endpoints:
            group.set_endpoints(usable)

    # --- /status ----------------------------------------------------------------------------

    def describe(self, service: str, version: str) -> dict[str, Any]:
        """One version: its endpoints with their marks, and where its traffic goes."""
        endpoints = []
        for endpoint in self._all.get((service, version), ()):
            key = (service, version, endpoint.address)
            endpoints.append(
                {
                    "address": endpoint.address,
                    "healthy": key not in self.unhealthy,
                    "ejected": key in self.ejected,
                    "detail": self.unhealthy.get(key),
                }
            )
        serving = any(e["healthy"] and not e["ejected"] for e in endpoints)
        fallback = falls_back_to(self._stable.get(service), self._on_empty.get(service), version, serving)
        return {"serving": serving, "falls_back_to": fallback, "endpoints": endpoints}


def falls_back_to(stable: str | None, on_empty: str | None, version: str, serving: bool) -> str | None:
    """Where a version's share goes (shown in /status): nowhere else while it serves; else the
    stable version when ``on_empty_version`` is "stable" and this is not it; else "503"."""
    if serving:
        return None
    if version != stable and on_empty == "stable":
        return stable
    return "503"
