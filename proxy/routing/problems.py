"""Collects what the route-table compile finds wrong, each named by its path in the config."""

from __future__ import annotations

from proxy.config.paths import Path, format_path
from proxy.errors import ConfigError


class Problems:
    """``PATH: what is wrong`` lines (``routes[2].split[1].version: ...``), raised as one ConfigError."""

    def __init__(self, source: str | None = None) -> None:
        self._prefix = f"{source}: " if source else ""
        self.lines: list[str] = []

    def add(self, path: Path, message: str) -> None:
        self.lines.append(f"{self._prefix}{format_path(path)}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError(self.lines)
