"""``load_config``: file -> interpolated, converted and validated ``Config``.

The steps, each reporting every problem it can before the next one runs:
read (syntax errors stop here), interpolate ``${VAR}``, convert to the schema,
validate across fields. Problems are formatted ``FILE: PATH: what (line N)``.

Relative TLS file names are taken relative to the config file's directory (not the
working directory), and stored absolute, so ``graylane run -c /etc/graylane/x.yaml``
means the same from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from proxy.config.convert import convert
from proxy.config.interpolate import interpolate
from proxy.config.paths import Problem, format_problem, line_of
from proxy.config.schema import Config, Listener
from proxy.config.sources import read_source
from proxy.config.validate import find_problems
from proxy.errors import ConfigError


def load_config(path: str, env: Mapping[str, str] | None = None) -> Config:
    """Load and check the config at ``path``; raises ConfigError listing every problem found."""
    source = read_source(path)

    def fail(problems: list[Problem]) -> ConfigError:
        # In file order when lines are known: easier to fix top to bottom.
        ordered = sorted(problems, key=lambda p: p.line or line_of(p.path, source.lines) or 0)
        return ConfigError([format_problem(path, p, source.lines) for p in ordered])

    if not isinstance(source.data, dict):
        kind = "empty" if source.data is None else f"a {type(source.data).__name__}"
        raise ConfigError(f"{path}: the top level must be a mapping of settings, but the file is {kind}")
    data, problems = interpolate(source.data, os.environ if env is None else env)
    config, convert_problems = convert(data, Config)
    # A value whose variable is missing would also fail to convert: say it once.
    unset = {p.path for p in problems}
    problems = source.problems + problems + [p for p in convert_problems if p.path not in unset]
    if config is None or problems:
        raise fail(problems)
    config = _resolve_files(config, os.path.dirname(os.path.abspath(path)))
    problems = find_problems(config)
    if problems:
        raise fail(problems)
    return config


def _resolve_files(config: Config, base: str) -> Config:
    def resolve(listener: Listener) -> Listener:
        if listener.tls is None:
            return listener
        tls = msgspec.structs.replace(
            listener.tls, cert=os.path.join(base, listener.tls.cert), key=os.path.join(base, listener.tls.key)
        )
        return msgspec.structs.replace(listener, tls=tls)

    # os.path.join keeps an absolute name as it is.
    return msgspec.structs.replace(config, listeners=[resolve(x) for x in config.listeners])
