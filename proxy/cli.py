"""The ``graylane`` command.

    graylane run -c FILE [--log-level LEVEL]     serve (exit 2 on a bad config)
    graylane check -c FILE                       load, validate and compile; exit 1 on problems
    graylane dump-config -c FILE [--format F]    the effective config (defaults, ${VAR} filled in)
    graylane status [--admin HOST:PORT] [--token T] [--watch [SECONDS]] [-c FILE]
                                                 routes, versions and live figures from the admin API
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


def _cmd_status(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console

    from proxy.admin.client import DEFAULT_ADDRESS, AdminApiError, admin_from_config, base_url, fetch_status
    from proxy.admin.table import render_status, watch_status

    address, token = args.admin, args.token
    try:
        if args.config:
            configured, configured_token = admin_from_config(args.config)
            address = address or configured
            token = token or configured_token
        address = address or DEFAULT_ADDRESS
        token = token or os.environ.get("GRAYLANE_ADMIN_TOKEN") or None
        source = base_url(address)
        document = fetch_status(address, token)
    except ConfigError as e:
        _print_problems(e)
        return 2
    except (AdminApiError, ValueError) as e:
        print(f"graylane status: {e}", file=sys.stderr)
        return 1
    console = Console()
    if args.watch is None:
        console.print(render_status(document, source))
        return 0
    try:
        watch_status(lambda: fetch_status(address, token), console, args.watch, source, document)
    except KeyboardInterrupt:
        pass
    return 0


def _admin_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The admin API address and token from --admin/--token, -c FILE, then the defaults."""
    import os

    from proxy.admin.client import DEFAULT_ADDRESS, admin_from_config

    address, token = args.admin, args.token
    if args.config:
        configured, configured_token = admin_from_config(args.config)
        address = address or configured
        token = token or configured_token
    return address or DEFAULT_ADDRESS, token or os.environ.get("GRAYLANE_ADMIN_TOKEN") or None


def _cmd_rollout(args: argparse.Namespace) -> int:
    import json

    from proxy.admin.client import AdminApiError, fetch_json

    action = "promote_full" if args.action == "promote" and args.full else args.action
    try:
        address, token = _admin_target(args)
        answer = fetch_json(address, f"/rollouts/{args.route}/{action}", token, method="POST")
    except ConfigError as e:
        _print_problems(e)
        return 2
    except (AdminApiError, ValueError) as e:
        print(f"graylane rollout: {e}", file=sys.stderr)
        return 1
    history = answer.pop("history", [])
    print(json.dumps(answer, indent=2))
    if history:
        print(f"({len(history)} transitions; the last: {history[-1]})")
    return 0


def _setup_rollout(parser: argparse.ArgumentParser) -> None:
    actions = ("status", "promote", "pause", "resume", "abort", "retry")
    parser.add_argument("action", choices=actions, help="what to do with the route's rollout")
    parser.add_argument("route", help="the route whose rollout it is")
    parser.add_argument("--full", action="store_true", help="with promote: straight to 100%%")
    parser.add_argument("--admin", metavar="HOST:PORT", help="the admin API (default: 127.0.0.1:9901)")
    parser.add_argument("--token", help="the admin API's bearer token (default: the config's)")
    parser.add_argument("-c", "--config", metavar="FILE", help="take the admin address and token from it")


def _setup_status(parser: argparse.ArgumentParser) -> None:
    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not 0.1 <= value <= 3600:
            raise argparse.ArgumentTypeError("the refresh interval is from 0.1 to 3600 seconds")
        return value

    parser.add_argument("--admin", metavar="HOST:PORT", help="the admin API (default: 127.0.0.1:9901)")
    parser.add_argument(
        "--token", help="the admin API's bearer token (default: the config's, else $GRAYLANE_ADMIN_TOKEN)"
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=seconds,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="take the admin address and token from this config"
    )


_AddArguments = Callable[[argparse.ArgumentParser], None]
_Handler = Callable[[argparse.Namespace], int]

# name -> (help, add arguments, run). New subcommands (demo, status, rollout...) add a row.
_COMMANDS: dict[str, tuple[str, _AddArguments, _Handler]] = {
    "run": ("serve with a config file", _setup_run, _cmd_run),
    "check": ("check a config file without serving", _add_config_option, _cmd_check),
    "dump-config": ("print the effective config", _setup_dump_config, _cmd_dump_config),
    "demo": ("run two demo versions behind graylane and show the live split", _setup_demo, _cmd_demo),
    "status": ("show each route's versions, weights and live figures", _setup_status, _cmd_status),
    "rollout": ("show or steer a route's rollout", _setup_rollout, _cmd_rollout),
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
