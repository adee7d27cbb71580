"""``load_config``: file -> interpolated, converted and validated ``Config``.

The steps, each reporting every problem it can before the next one runs:
read (syntax errors stop here), interpolate ``${VAR}``, convert to the schema,
validate across fields. Problems are formatted ``FILE: PATH: what (line N)``.

Relative file names are taken relative to the config file's directory (not the
working directory), as nginx takes them relative to its prefix, and stored absolute,
so ``graylane run -c /etc/graylane/x.yaml`` means the same from anywhere. They are
resolved before validation, so a key file is checked where it will be read. The
fields: ``listeners[].tls.cert`` and ``.key``, ``routes[].auth.jwt.public_keys[]`` and
``.jwks_file``, ``access_log.path`` (except ``-``, standard output) and
``rollouts.state_dir``. Absolute names (also those written with ``${VAR}``) are kept
as they are; URLs (``jwks_url``, ``redis.url``, webhooks) are not file names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

from proxy.config.convert import convert
from proxy.config.interpolate import interpolate
from proxy.config.paths import Problem, format_problem, line_of
from proxy.config.schema import Config, Listener, Route
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
    """``config`` with every relative file name joined to ``base`` (the config file's directory)."""

    def file(name: str) -> str:
        # os.path.join keeps an absolute name as it is; "" is kept for validation to report.
        return os.path.join(base, name) if name else name

    def listener(item: Listener) -> Listener:
        if item.tls is None:
            return item
        tls = msgspec.structs.replace(item.tls, cert=file(item.tls.cert), key=file(item.tls.key))
        return msgspec.structs.replace(item, tls=tls)

    def route(item: Route) -> Route:
        if item.auth is None:
            return item
        jwt = item.auth.jwt
        jwt = msgspec.structs.replace(
            jwt,
            public_keys=[file(name) for name in jwt.public_keys],
            jwks_file=None if jwt.jwks_file is None else file(jwt.jwks_file),
        )
        return msgspec.structs.replace(item, auth=msgspec.structs.replace(item.auth, jwt=jwt))

    access_log = config.access_log
    if access_log.path is not None and access_log.path != "-":  # "-": standard output
        access_log = msgspec.structs.replace(access_log, path=file(access_log.path))
    rollouts = msgspec.structs.replace(config.rollouts, state_dir=file(config.rollouts.state_dir))
    return msgspec.structs.replace(
        config,
        listeners=[listener(x) for x in config.listeners],
        routes=[route(x) for x in config.routes],
        access_log=access_log,
        rollouts=rollouts,
    )
