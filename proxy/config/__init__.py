"""Configuration: the schema (``proxy.config.schema``), loading, validation, dumping.

config = load_config("conf/basic.yaml")   # raises proxy.errors.ConfigError
"""

from __future__ import annotations

from proxy.config.dump import dump_config
from proxy.config.load import load_config
from proxy.config.schema import Config
from proxy.config.validate import validate

__all__ = ["Config", "dump_config", "load_config", "validate"]
