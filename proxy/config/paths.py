"""Paths inside a config file and the problems found at them.

A path is a tuple of keys (str) and list indexes (int), e.g. ``("routes", 2, "split",
1, "weight")``, written ``routes[2].split[1].weight``. Keys that are not plain words
are quoted (``services["a.b"]``) so that every written path reads back one way.
Problems carry tuple paths until they are formatted, so the loader can look up the
YAML line of a path, or of its nearest parent when the path itself is not in the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import NamedTuple

Path = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
# One step of a msgspec error path: ".name", "[3]" or "[...]" (a dict key it did not record).
_MSGSPEC_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


class Problem(NamedTuple):
    path: Path
    message: str
    line: int | None = None  # when known better than the line of ``path`` (a repeated key)


def format_path(path: Path) -> str:
    """``("routes", 2, "name")`` -> ``routes[2].name``."""
    out: list[str] = []
    for step in path:
        if isinstance(step, int):
            out.append(f"[{step}]")
        elif _PLAIN_KEY.match(step):
            out.append(f".{step}" if out else step)
        else:
            out.append(f"[{json.dumps(step)}]")
    return "".join(out)


def parse_msgspec_path(text: str) -> Path:
    """``$.routes[2].split[...]`` -> ``("routes", 2, "split")``; an unrecorded dict key ends the path."""
    steps: list[str | int] = []
    for m in _MSGSPEC_STEP.finditer(text.removeprefix("$")):
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            break  # "[...]": the key is unknown, so nothing deeper can be named
    return tuple(steps)


def line_of(path: Path, lines: Mapping[Path, int]) -> int | None:
    """The line of ``path``, else of its nearest parent that is in the file."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def format_problem(file: str, problem: Problem, lines: Mapping[Path, int] | None = None) -> str:
    """``FILE: PATH: what is wrong (line N)``; the path part is left out at the top level."""
    where = format_path(problem.path)
    text = f"{file}: {where}: {problem.message}" if where else f"{file}: {problem.message}"
    line = problem.line
    if line is None and lines:
        line = line_of(problem.path, lines)
    return f"{text} (line {line})" if line is not None else text
