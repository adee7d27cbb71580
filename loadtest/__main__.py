"""``python -m loadtest``: graylane against nginx (and an aiohttp peer) on this machine.

    python -m loadtest                  # every scenario, 10 s runs, 3 repetitions (make bench)
    python -m loadtest --quick          # 3 s runs
    python -m loadtest --scenarios small,canary --reps 5 --keep-logs

nginx and wrk must be installed (``make system-deps``). The aiohttp peer needs the ``bench``
extra; it is installed into the running virtualenv when missing (``--no-install`` skips that).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtest.procs import stop_on_sigterm
from loadtest.runner import DOCS_PAGE, RESULTS_DIR, ROOT, Options, run_benchmark
from loadtest.scenarios import SCENARIO_KEYS, TARGETS, select

QUICK_SECONDS = 3
DEFAULT_SECONDS = 10


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest", description="graylane benchmark against nginx"
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS} s runs")
    parser.add_argument(
        "--duration", type=int, help=f"whole seconds per measured run (default {DEFAULT_SECONDS})"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="whole seconds of warm-up before each run (default 1)"
    )
    parser.add_argument(
        "--scenarios", type=_csv, help=f"comma-separated subset of: {', '.join(SCENARIO_KEYS)} (default all)"
    )
    parser.add_argument("--targets", type=_csv, help=f"comma-separated subset of: {', '.join(TARGETS)}")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--max-noise",
        type=float,
        default=0.25,
        help="measure a run again when other work took more than this share of its CPUs (default 0.25)",
    )
    parser.add_argument("--retries", type=int, default=1, help="how many times at most (default 1)")
    parser.add_argument("--load-cpus", default="0", help="CPUs of wrk and the backend (default 0)")
    parser.add_argument("--proxy-cpus", default="1", help="CPUs of the proxy under test (default 1)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR, help="where latest.json and latest.md go"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS_PAGE,
        help="page whose marked section gets the table (default: "
        "docs/performance.md, updated only by a run of every scenario and proxy)",
    )
    parser.add_argument("--no-docs", action="store_true", help="leave the docs page alone")
    parser.add_argument(
        "--no-install", action="store_true", help="do not install the bench extra when missing"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (configs, logs)")
    return parser


def ensure_bench_extra(python: str = sys.executable) -> bool:
    """Install graylane's ``bench`` extra (aiohttp, locust) into this environment if aiohttp is missing."""
    if importlib.util.find_spec("aiohttp") is not None:
        return True
    print(
        f"loadtest: installing the bench extra: {python} -m pip install -e '{ROOT}[bench]'", file=sys.stderr
    )
    done = subprocess.run([python, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"], timeout=600)
    importlib.invalidate_caches()
    if done.returncode != 0 or importlib.util.find_spec("aiohttp") is None:
        print(
            "loadtest: could not install the bench extra; the aiohttp peer is left out "
            "(install it with: .venv/bin/pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(
            f"loadtest: {' and '.join(missing)} not found; install with `make system-deps` "
            "(or apt-get install nginx-light wrk)",
            file=sys.stderr,
        )
        return 2
    try:
        scenarios = select(args.scenarios)
    except ValueError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    targets = tuple(args.targets or TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        print(
            f"loadtest: unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}", file=sys.stderr
        )
        return 2
    if (
        args.reps < 1
        or (args.duration is not None and args.duration < 1)
        or args.warmup < 0
        or args.retries < 0
    ):
        print(
            "loadtest: --reps and --duration are at least 1, --warmup and --retries at least 0",
            file=sys.stderr,
        )
        return 2
    if "aiohttp" in targets and not args.no_install:
        ensure_bench_extra()
    complete = args.scenarios is None and args.targets is None
    options = Options(
        duration=args.duration
        if args.duration is not None
        else (QUICK_SECONDS if args.quick else DEFAULT_SECONDS),
        reps=args.reps,
        warmup=args.warmup,
        scenarios=scenarios,
        targets=targets,
        connections=args.connections,
        load_cpus=args.load_cpus,
        proxy_cpus=args.proxy_cpus,
        results_dir=args.results,
        docs_page=None if args.no_docs or (not complete and args.docs == DOCS_PAGE) else args.docs,
        keep_logs=args.keep_logs,
        max_noise=args.max_noise,
        retries=args.retries,
    )
    stop_on_sigterm()
    try:
        outcome = run_benchmark(options)
    except KeyboardInterrupt:
        print("loadtest: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(outcome.markdown)
    print(f"written: {outcome.json_path}, {outcome.markdown_path}", file=sys.stderr)
    if options.docs_page is not None:
        print(f"updated: {options.docs_page}", file=sys.stderr)
    return 0 if outcome.runs else 1


if __name__ == "__main__":
    sys.exit(main())
