"""The ``graylane`` command.

    graylane run -c FILE [--log-level LEVEL]     serve (exit 2 on a bad config)
    graylane check -c FILE                       load, validate and compile; exit 1 on problems
    graylane dump-config -c FILE [--format F]    the effective config (defaults, ${VAR} filled in)
    graylane version

Each subcommand is one ``_cmd_*`` function plus one entry in ``_COMMANDS``; heavy
modules (the runtime, the route table) are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

import msgspec

from proxy import __version__
from proxy.config.dump import dump_config
from proxy.config.load import load_config
from proxy.config.schema import Config
from proxy.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMAT = "graylane: %(levelname)s %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the one handler graylane installs, so a second call replaces it."""


def setup_logging(level: str) -> None:
    """Log to the current stderr as ``graylane: LEVEL message`` at ``level`` (debug...error)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())


def _print_problems(error: ConfigError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def _compile(config: Config, path: str) -> None:
    """Build the route table as ``run`` would, when the routing package provides one."""
    try:
        table = importlib.import_module("proxy.routing.table")
    except ModuleNotFoundError as e:
        if e.name in ("proxy.routing", "proxy.routing.table"):
            return  # no route table in this build: loading and validation are the whole check
        raise
    try:
        table.RouteTable(config)
    except ConfigError as e:
        # Problems found past loading do not know the file; name it like loading does.
        raise ConfigError([p if p.startswith(f"{path}:") else f"{path}: {p}" for p in e.problems]) from None


def _cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "info")
    try:
        config = load_config(args.config)
    except ConfigError as e:
        _print_problems(e)
        return 2
    if args.log_level:  # the override becomes part of the effective config (workers read it)
        config = msgspec.structs.replace(config, log_level=args.log_level)
    setup_logging(config.log_level)
    from proxy.runtime.server import run

    return run(config, args.config)


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        _compile(load_config(args.config), args.config)
    except ConfigError as e:
        _print_problems(e)
        return 1
    print("configuration OK")
    return 0


def _cmd_dump_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as e:
        _print_problems(e)
        return 1
    sys.stdout.write(dump_config(config, args.format))
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"graylane {__version__}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from proxy.demo import run_demo

    return run_demo(args.config, rate=args.rate, duration=args.duration)


def _setup_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", help="demo config (default: conf/demo.yaml)")
    parser.add_argument("--rate", type=float, default=20.0, help="demo requests per second (0: none)")
    parser.add_argument("--duration", type=float, default=600.0, help="stop after this many seconds")


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", required=True, metavar="FILE", help="config file (.yaml, .toml or .json)"
    )


def _setup_run(parser: argparse.ArgumentParser) -> None:
    _add_config_option(parser)
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="override the config's log_level")


def _setup_dump_config(parser: argparse.ArgumentParser) -> None:
    _add_config_option(parser)
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml")


_AddArguments = Callable[[argparse.ArgumentParser], None]
_Handler = Callable[[argparse.Namespace], int]

# name -> (help, add arguments, run). New subcommands (demo, status, rollout...) add a row.
_COMMANDS: dict[str, tuple[str, _AddArguments, _Handler]] = {
    "run": ("serve with a config file", _setup_run, _cmd_run),
    "check": ("check a config file without serving", _add_config_option, _cmd_check),
    "dump-config": ("print the effective config", _setup_dump_config, _cmd_dump_config),
    "demo": ("run two demo versions behind graylane and show the live split", _setup_demo, _cmd_demo),
    "version": ("print the version", lambda parser: None, _cmd_version),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graylane", description="HTTP/1.1 reverse proxy for gray releases")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, handler) in _COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return args.handler(args)
