"""``graylane status``: the admin API's /status document as tables, once or refreshed live.

``route_views`` turns the document into plain rows (one per version of each route's service,
tested without a terminal); ``render_status`` lays them out with rich; ``watch_status``
refreshes them in place until interrupted. The live figures are per version over the last
window (up to a minute), added up across the routes that send to it, so a version shows the
same figures under every route of its service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from proxy.admin.client import AdminApiError

DASH = "-"


class VersionRow(NamedTuple):
    """One version as a route sees it; a live figure is None before the window has two samples."""

    version: str
    weight: float  # percent of the route's split
    stable: bool
    by_rule: bool  # a content rule of the route can choose it
    healthy: int  # endpoints neither failing their health check nor ejected
    endpoints: int
    requests: int | None
    rate: float | None  # requests per second
    error_pct: float | None  # 5xx share of the requests, in percent
    p50_ms: float | None
    p99_ms: float | None
    falls_back_to: str | None = None  # where its share goes while it has no healthy endpoint


class RouteView(NamedTuple):
    name: str
    service: str
    rules: list[str]  # the version each content rule sends to, in order
    sticky: str | None
    mirror: str | None
    rows: list[VersionRow]


def route_views(document: Mapping[str, Any]) -> list[RouteView]:
    """Each route of a /status document with a row per version of its service."""
    services = document.get("services", {})
    views = []
    for route in document.get("routes", []):
        versions = services.get(route["service"], {}).get("versions", {})
        weights = route.get("weights", {})
        rules = list(route.get("rules", []))
        rows = [
            _row(name, version, weights.get(name, 0.0), name in rules) for name, version in versions.items()
        ]
        mirror = route.get("mirror")
        views.append(
            RouteView(
                route["name"],
                route["service"],
                rules,
                route.get("sticky"),
                f"{mirror['percent']:g}% to {mirror['version']}" if mirror else None,
                rows,
            )
        )
    return views


def _row(name: str, version: Mapping[str, Any], weight: float, by_rule: bool) -> VersionRow:
    endpoints = version.get("endpoints", [])
    live = version.get("last_window")
    healthy = sum(1 for e in endpoints if e.get("healthy", True) and not e.get("ejected", False))
    if live is None:
        figures: tuple[Any, ...] = (None,) * 5
    else:
        requests = live["requests"]
        figures = (
            requests,
            live["rate"],
            100.0 * live["error_ratio"] if requests else None,
            _ms(live["p50"]),
            _ms(live["p99"]),
        )
    return VersionRow(
        name,
        float(weight),
        bool(version.get("stable")),
        by_rule,
        healthy,
        len(endpoints),
        *figures,
        version.get("falls_back_to"),
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


# --- rich --------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return DASH if value is None else f"{value:.{digits}f}{suffix}"


def _error_style(error_pct: float | None) -> str:
    if not error_pct:
        return ""
    return "bold red" if error_pct >= 5.0 else "yellow"


def route_table(view: RouteView) -> RenderableType:
    """One route: a heading line, then its versions as a table."""
    details = [f"service {view.service}"]
    if view.rules:
        details.append("rules -> " + ", ".join(view.rules))
    if view.sticky:
        details.append(f"sticky on {view.sticky}")
    if view.mirror:
        details.append(f"mirror {view.mirror}")
    heading = Text.assemble(("route ", "dim"), (view.name, "bold"), ("  " + " | ".join(details), "dim"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("version", no_wrap=True)
    table.add_column("weight", justify="right", no_wrap=True)
    table.add_column("stable", justify="center", no_wrap=True)
    table.add_column("endpoints", justify="right", no_wrap=True)
    table.add_column("req/s", justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    table.add_column("p50 ms", justify="right", no_wrap=True)
    table.add_column("p99 ms", justify="right", no_wrap=True)
    for row in view.rows:
        weight = f"{row.weight:g}%" + (" +rule" if row.by_rule else "")
        endpoints = Text(f"{row.healthy}/{row.endpoints}", style="" if row.healthy else "bold red")
        if row.falls_back_to:
            endpoints.append(f" -> {row.falls_back_to}", style="yellow")
        table.add_row(
            Text(row.version, style="bold" if row.stable else ""),
            weight,
            "yes" if row.stable else "",
            endpoints,
            _number(row.rate),
            Text(_number(row.error_pct, suffix="%"), style=_error_style(row.error_pct)),
            _number(row.p50_ms),
            _number(row.p99_ms),
        )
    return Group(Text(""), heading, table)


def render_status(document: Mapping[str, Any], source: str, *, problem: str | None = None) -> RenderableType:
    """The whole screen: a header line, then a table per route. ``problem`` is shown under the header
    (in watch mode, when the last refresh failed and the figures shown are older)."""
    window = _window_seconds(document)
    header = Text.assemble(
        ("graylane status", "bold"),
        f"  {source}  ",
        (time.strftime("%H:%M:%S"), "dim"),
        "  ",
        (f"last {window:.0f} s" if window else "window fills during the first 2 s", "dim"),
    )
    if document.get("draining"):
        header.append("  DRAINING", style="bold yellow")
    parts: list[RenderableType] = [header]
    if problem:
        parts.append(Text(problem, style="bold red"))
    views = route_views(document)
    if not views:
        parts.append(Text("no routes configured", style="dim"))
    parts.extend(route_table(view) for view in views)
    return Group(*parts)


def _window_seconds(document: Mapping[str, Any]) -> float | None:
    """The length of the window the figures cover (None before it has two samples)."""
    for service in document.get("services", {}).values():
        for version in service.get("versions", {}).values():
            live = version.get("last_window")
            if live is not None:
                return float(live["seconds"])
    return None


def watch_status(
    fetch: Callable[[], Mapping[str, Any]],
    console: Console,
    interval: float,
    source: str,
    first: Mapping[str, Any],
    *,
    refreshes: int | None = None,
) -> None:
    """Show ``first``, then ``fetch()`` again every ``interval`` seconds, in place.

    Runs until interrupted (Ctrl-C raises KeyboardInterrupt in the caller), or for ``refreshes``
    refreshes. A failed refresh keeps the last figures on screen under the error.
    """
    document = first
    with Live(render_status(document, source), console=console, auto_refresh=False) as live:
        done = 0
        while refreshes is None or done < refreshes:
            time.sleep(interval)
            try:
                document = fetch()
                screen = render_status(document, source)
            except AdminApiError as error:
                screen = render_status(document, source, problem=f"{error} (showing the last answer)")
            live.update(screen, refresh=True)
            done += 1
