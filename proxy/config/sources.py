"""Reading a config file (YAML, TOML or JSON, by extension) into plain data.

Besides the data, a YAML file yields the line of every mapping key and sequence
item, keyed by path, so that problems found later can point at a line. Duplicate
keys, which PyYAML and ``json`` accept silently (the last one wins), are reported:
two ``v1:`` entries under one service are always a mistake.
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any, NamedTuple

import yaml

from proxy.config.paths import Path, Problem
from proxy.errors import ConfigError

_MERGE_TAG = "tag:yaml.org,2002:merge"


class Source(NamedTuple):
    data: Any
    lines: dict[Path, int]  # path -> 1-based line (YAML only)
    problems: list[Problem]  # duplicate keys


def read_source(file: str) -> Source:
    """Parse ``file``; unreadable files and syntax errors raise ConfigError at once."""
    reader = _READERS.get(os.path.splitext(file)[1].lower())
    if reader is None:
        raise ConfigError(f"{file}: unknown config format (use .yaml, .yml, .toml or .json)")
    try:
        with open(file, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{file}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    return reader(file, text)


def _read_yaml(file: str, text: str) -> Source:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Path, int] = {}
        problems: list[Problem] = []
        if node is not None:
            # Walk before constructing: construction flattens "<<" merges into the
            # mapping, after which an override looks like a duplicate key.
            _walk_yaml(node, (), lines, problems, set())
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        line = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        raise ConfigError(f"{file}: invalid YAML: {e.problem or e.context}{line}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: invalid YAML: {e}") from None
    finally:
        loader.dispose()
    return Source(data, lines, problems)


def _walk_yaml(
    node: yaml.Node, path: Path, lines: dict[Path, int], problems: list[Problem], seen: set[int]
) -> None:
    if id(node) in seen:  # an alias: walked already (this also stops recursive anchors)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            if key in keys:
                problems.append(Problem(path + (key,), f"duplicate key (first at line {keys[key]})", line))
            keys[key] = line
            lines.setdefault(path + (key,), line)
            _walk_yaml(value_node, path + (key,), lines, problems, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _walk_yaml(item, path + (index,), lines, problems, seen)


def _read_toml(file: str, text: str) -> Source:
    try:
        return Source(tomllib.loads(text), {}, [])
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: invalid TOML: {e}") from None


def _read_json(file: str, text: str) -> Source:
    duplicates: dict[int, list[str]] = {}  # id(object) -> its repeated keys

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            names = [k for k, _ in items]
            duplicates[id(obj)] = sorted({k for k in names if names.count(k) > 1})
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{file}: invalid JSON: {e.msg} (line {e.lineno})") from None
    problems: list[Problem] = []
    if duplicates:
        _find_json_duplicates(data, (), duplicates, problems)
    return Source(data, {}, problems)


def _find_json_duplicates(
    value: Any, path: Path, duplicates: dict[int, list[str]], problems: list[Problem]
) -> None:
    if isinstance(value, dict):
        problems.extend(Problem(path + (k,), "duplicate key") for k in duplicates.get(id(value), ()))
        for key, item in value.items():
            _find_json_duplicates(item, path + (key,), duplicates, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _find_json_duplicates(item, path + (index,), duplicates, problems)


_READERS = {".yaml": _read_yaml, ".yml": _read_yaml, ".toml": _read_toml, ".json": _read_json}
