"""``${VAR}`` and ``${VAR:-default}`` in the string values of a config.

As in the shell, the default is used when VAR is unset or empty. ``$${`` writes a
literal ``${``. Keys are never interpolated, only values, so the shape of a config
does not depend on the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from proxy.config.paths import Path, Problem

# "$${" (escape), "${NAME}", "${NAME:-default}", or any other "${" (malformed).
_TOKEN = re.compile(r"\$\$\{|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})?")


def interpolate(data: Any, env: Mapping[str, str]) -> tuple[Any, list[Problem]]:
    """A copy of ``data`` with placeholders replaced, and the problems found."""
    problems: list[Problem] = []
    return _walk(data, (), env, problems), problems


def _walk(value: Any, path: Path, env: Mapping[str, str], problems: list[Problem]) -> Any:
    if isinstance(value, str):
        return _substitute(value, path, env, problems) if "${" in value else value
    if isinstance(value, dict):
        return {k: _walk(v, path + (k,), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, path + (i,), env, problems) for i, v in enumerate(value)]
    return value


def _substitute(text: str, path: Path, env: Mapping[str, str], problems: list[Problem]) -> str:
    def replace(m: re.Match[str]) -> str:
        whole, name, default = m.group(0), m.group(1), m.group(2)
        if whole == "$${":
            return "${"
        if name is None:
            problems.append(
                Problem(
                    path,
                    f"malformed placeholder in {text!r} (write ${{NAME}} or "
                    "${NAME:-default}, or $${ for a literal ${)",
                )
            )
            return whole
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is None:
            problems.append(Problem(path, f"environment variable {name} is not set (no default given)"))
        return ""

    return _TOKEN.sub(replace, text)
