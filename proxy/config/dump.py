"""The effective config as YAML or JSON text, which ``load_config`` reads back equal.

Durations and sizes are written in their short form ("30s", "16KiB"). A literal
``${`` in a value is written ``$${`` so that loading the dump does not interpolate
it a second time.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec
import yaml

from proxy.config.schema import Config
from proxy.config.units import enc_hook


def config_to_builtins(config: Config) -> dict[str, Any]:
    return _escape(msgspec.to_builtins(config, enc_hook=enc_hook))


def dump_config(config: Config, fmt: Literal["yaml", "json"] = "yaml") -> str:
    data = config_to_builtins(config)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value
