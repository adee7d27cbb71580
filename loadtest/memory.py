"""graylane's memory under load: ``python -m loadtest.memory`` (``make bench-memory``).

    python -m loadtest.memory                          # 1,000,000 requests after 50,000 of warm-up
    python -m loadtest.memory --requests 200000 --no-docs
    python -m loadtest.memory --canary --keep-logs     # the canary config, access log to a file

The target: RSS per worker under load <= 60 MiB, and growth over 1M requests <= 5 MiB.

The nginx backend and wrk run on CPU0, graylane (1 worker) alone on CPU1, as in
``python -m loadtest``. wrk warms graylane up until ``--warmup-requests`` requests are done; then
VmRSS is read from ``/proc/PID/status``; then wrk runs in chunks of at most ``--chunk-seconds``
(each with a timeout) until ``--requests`` requests are done in total (the sum of wrk's
"N requests in" lines), VmRSS sampled every ``--sample-interval`` seconds under load and after
every chunk; then VmRSS is read again. RSS readings at rest are taken ``SETTLE_SECONDS`` after
wrk ended, so that the closed connections are gone. Growth is the RSS after the run minus the
RSS after the warm-up; the peak is the highest RSS under load (and the kernel's VmHWM, reset
after the warm-up where the kernel allows it).

Results go to ``loadtest/results/memory.json`` and the section of docs/performance.md between
``<!-- memory:begin ... -->`` and ``<!-- memory:end -->``. The exit status is 0 when both
targets are met, 1 when one is missed or the run did not finish, 2 on a usage error.
Network traffic goes to 127.0.0.1 only; every process is started by this module and stopped
by its PID; the whole run is bounded by ``--deadline``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadtest import report, wrk
from loadtest.noise import delay_share, noise_share
from loadtest.procs import (
    CLOCK_TICKS,
    Managed,
    parse_cpu_list,
    pinned,
    process_tree,
    read_proc_stat,
    stop_on_sigterm,
)
from loadtest.runner import DOCS_PAGE, RESULTS_DIR, Bench, Options
from loadtest.scenarios import GRAYLANE, Scenario, select

RSS_LIMIT_MIB = 60.0
GROWTH_LIMIT_MIB = 5.0
DEFAULT_REQUESTS = 1_000_000
DEFAULT_WARMUP_REQUESTS = 50_000
DEFAULT_DEADLINE = 900.0  # seconds for the whole run
SETTLE_SECONDS = 0.5
WRK_GRACE = 30.0  # seconds a wrk chunk may run past its duration before it is killed

BEGIN_MARKER = "<!-- memory:begin (written by python -m loadtest.memory) -->"
END_MARKER = "<!-- memory:end -->"
RESULTS_NAME = "memory.json"

_STATUS_LINE = re.compile(r"^(\w+):\s+(\d+)\s+kB\s*$", re.M)


# --- /proc/PID/status ----------------------------------------------------------------


def parse_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of a ``/proc/PID/status`` text (VmRSS, VmHWM, RssAnon, ...), in KiB."""
    return {name: int(value) for name, value in _STATUS_LINE.findall(text)}


@dataclass(frozen=True)
class Reading:
    """One look at a process's memory, in KiB."""

    rss_kib: int
    hwm_kib: int
    anon_kib: int | None = None
    file_kib: int | None = None

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


def reading_from_status(text: str) -> Reading:
    """A ``Reading`` from a status text; ValueError without VmRSS (a zombie, a kernel thread)."""
    fields = parse_status(text)
    if "VmRSS" not in fields:
        raise ValueError("no VmRSS line in the status text (has the process exited?)")
    return Reading(
        rss_kib=fields["VmRSS"],
        hwm_kib=fields.get("VmHWM", fields["VmRSS"]),
        anon_kib=fields.get("RssAnon"),
        file_kib=fields.get("RssFile"),
    )


def read_memory(pid: int) -> Reading:
    with open(f"/proc/{pid}/status") as f:
        return reading_from_status(f.read())


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (``5`` to /proc/PID/clear_refs, Linux 4.0+);
    False where the kernel or the permissions refuse."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- the verdict ---------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    peak_mib: float
    growth_mib: float
    requests: int
    wanted_requests: int
    rss_limit_mib: float = RSS_LIMIT_MIB
    growth_limit_mib: float = GROWTH_LIMIT_MIB

    @property
    def rss_ok(self) -> bool:
        return self.peak_mib <= self.rss_limit_mib

    @property
    def growth_ok(self) -> bool:
        return self.growth_mib <= self.growth_limit_mib

    @property
    def complete(self) -> bool:
        return self.requests >= self.wanted_requests

    @property
    def passed(self) -> bool:
        return self.rss_ok and self.growth_ok and self.complete

    def reasons(self) -> list[str]:
        """Why it failed (empty when it passed)."""
        found = []
        if not (math.isfinite(self.peak_mib) and math.isfinite(self.growth_mib)):
            found.append("RSS was not read before and after the run")
        elif not self.rss_ok:
            found.append(f"peak RSS {self.peak_mib:.1f} MiB is above {self.rss_limit_mib:g} MiB")
        if math.isfinite(self.growth_mib) and not self.growth_ok:
            found.append(f"RSS grew {self.growth_mib:+.1f} MiB, more than {self.growth_limit_mib:g} MiB")
        if not self.complete:
            found.append(f"only {self.requests:,} of {self.wanted_requests:,} requests were done")
        return found

    def summary(self) -> str:
        if self.passed:
            return "pass"
        return "FAIL: " + "; ".join(self.reasons())


def mark(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# --- the docs section ----------------------------------------------------------------


def replace_section(document: str, section: str) -> str:
    """``document`` with the text between the memory markers replaced by ``section`` (a
    "Memory" heading and the markers added at the end when absent)."""
    block = f"{BEGIN_MARKER}\n{section.rstrip()}\n{END_MARKER}"
    pattern = re.compile(re.escape(BEGIN_MARKER) + r".*?" + re.escape(END_MARKER), re.S)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    return document.rstrip() + "\n\n## Memory\n\n" + block + "\n"


# --- one run -------------------------------------------------------------------------


@dataclass
class Chunk:
    """One wrk run under load and what was seen during it."""

    requests: int
    seconds: float
    rps: float
    errors: int
    rss_after_kib: int
    rss_max_kib: int  # the highest RSS sampled while wrk ran (and right after it)


@dataclass
class MemoryRun:
    scenario: str
    connections: int
    wanted_requests: int
    warmup_requests: int
    warmup_done: int = 0
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    warmup_errors: int = 0
    after_warmup: Reading | None = None
    after: Reading | None = None
    peak_kib: int = 0
    hwm_reset: bool = False
    chunks: list[Chunk] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, RSS KiB)
    noise: float | None = None
    run_delay: float | None = None
    processes: int = 1
    stopped_early: str = ""

    @property
    def growth_mib(self) -> float:
        if self.after_warmup is None or self.after is None:
            return math.nan
        return (self.after.rss_kib - self.after_warmup.rss_kib) / 1024

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    def verdict(self) -> Verdict:
        peak = self.peak_mib if self.peak_kib else math.inf
        growth = self.growth_mib if not math.isnan(self.growth_mib) else math.inf
        return Verdict(peak, growth, self.requests, self.wanted_requests)


@dataclass
class MemoryOptions:
    requests: int = DEFAULT_REQUESTS
    warmup_requests: int = DEFAULT_WARMUP_REQUESTS
    connections: int = 64
    chunk_seconds: int = 10
    sample_interval: float = 0.5
    deadline: float = DEFAULT_DEADLINE
    canary: bool = False
    load_cpus: str = "0"
    proxy_cpus: str = "1"
    results_dir: Path = RESULTS_DIR
    docs_page: Path | None = DOCS_PAGE
    keep_logs: bool = False


class DeadlineReached(RuntimeError):
    """The overall deadline passed before the run was done."""


def next_duration(remaining: int, rps: float | None, chunk_seconds: int, seconds_left: float) -> int:
    """Whole seconds for the next wrk chunk: enough for ``remaining`` requests at ``rps`` (plus
    a tenth), at most ``chunk_seconds`` and what the deadline leaves, at least 1; 1 while the
    rate is not known yet."""
    wanted = 1 if not rps else math.ceil(remaining * 1.1 / rps)
    return max(1, min(chunk_seconds, wanted, int(seconds_left)))


class MemoryBench:
    def __init__(self, options: MemoryOptions, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.deadline = time.monotonic() + options.deadline
        self.scenario: Scenario = select(["canary" if options.canary else "small"])[0]
        self.bench = Bench(
            Options(
                scenarios=[self.scenario],
                targets=(GRAYLANE,),
                connections=options.connections,
                load_cpus=options.load_cpus,
                proxy_cpus=options.proxy_cpus,
                keep_logs=options.keep_logs,
                docs_page=None,
            ),
            self.log,
        )
        self.wrk_output = self.bench.run_dir / "wrk.out"
        self.rps: float | None = None  # the last wrk run's rate: it sizes the next run

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def _wrk(
        self, port: int, duration: int, proxy: Managed, on_sample: Callable[[int], None]
    ) -> wrk.WrkResult:
        """One wrk chunk, the proxy's RSS passed to ``on_sample`` every sample interval; wrk is
        killed (by its PID) past its duration plus ``WRK_GRACE`` or the overall deadline."""
        script = self.bench.scripts[self.scenario.script] if self.scenario.script else None
        argv = wrk.command(
            f"http://127.0.0.1:{port}{self.scenario.path}",
            duration=duration,
            connections=self.options.connections,
            script=script,
            headers=self.scenario.headers,
        )
        limit = time.monotonic() + min(duration + WRK_GRACE, max(1.0, self.seconds_left()))
        with open(self.wrk_output, "w+") as out:
            popen = subprocess.Popen(
                pinned(argv, self.options.load_cpus), stdout=out, stderr=subprocess.STDOUT
            )
            try:
                while True:
                    try:
                        popen.wait(self.options.sample_interval)
                        break
                    except subprocess.TimeoutExpired:
                        on_sample(self._rss(proxy))
                        if time.monotonic() > limit:
                            raise DeadlineReached(
                                f"wrk ran past {duration + WRK_GRACE:g} s or the deadline"
                            ) from None
            finally:
                if popen.poll() is None:
                    popen.kill()  # our own child, by its PID
                    popen.wait(5.0)
            out.seek(0)
            text = out.read()
        if popen.returncode != 0:
            raise wrk.WrkOutputError(f"wrk exited {popen.returncode}: {text.strip()[:500]}")
        return wrk.parse_output(text)

    @staticmethod
    def _rss(proxy: Managed) -> int:
        if proxy.popen is not None and proxy.popen.poll() is not None:
            raise RuntimeError(f"graylane exited with {proxy.popen.returncode}:\n{proxy.log_tail()}")
        return read_memory(proxy.pid).rss_kib

    def _at_rest(self, proxy: Managed) -> Reading:
        time.sleep(SETTLE_SECONDS)
        self._rss(proxy)  # raises when graylane is gone
        return read_memory(proxy.pid)

    def warm_up(self, run: MemoryRun, proxy: Managed, port: int) -> None:
        rps: float | None = None
        while run.warmup_done < self.options.warmup_requests:
            self._check_deadline()
            remaining = self.options.warmup_requests - run.warmup_done
            duration = next_duration(remaining, rps, self.options.chunk_seconds, self.seconds_left())
            result = self._wrk(port, duration, proxy, lambda _: None)
            run.warmup_done += result.requests
            run.warmup_errors += result.socket_errors + result.non_2xx
            rps = result.rps or None
        self.rps = rps
        self.log(f"warm-up: {run.warmup_done:,} requests")

    def measure(self, run: MemoryRun, proxy: Managed, port: int) -> None:
        """The chunks under load until ``requests`` are done; fills ``run``."""
        started = time.monotonic()
        rps = self.rps

        def sample(rss_kib: int) -> None:
            run.samples.append((round(time.monotonic() - started, 2), rss_kib))
            run.peak_kib = max(run.peak_kib, rss_kib)

        while run.requests < run.wanted_requests:
            self._check_deadline()
            remaining = run.wanted_requests - run.requests
            duration = next_duration(remaining, rps, self.options.chunk_seconds, self.seconds_left())
            first_sample = len(run.samples)
            result = self._wrk(port, duration, proxy, sample)
            sample(self._rss(proxy))  # right after wrk: the connections may still be open
            rss_max = max(rss for _, rss in run.samples[first_sample:])
            after = self._at_rest(proxy)
            chunk = Chunk(
                requests=result.requests,
                seconds=result.seconds,
                rps=result.rps,
                errors=result.socket_errors + result.non_2xx,
                rss_after_kib=after.rss_kib,
                rss_max_kib=rss_max,
            )
            run.chunks.append(chunk)
            run.requests += chunk.requests
            run.seconds += chunk.seconds
            run.errors += chunk.errors
            rps = result.rps or None
            self.log(
                f"chunk {len(run.chunks):>3}: {chunk.requests:>9,} requests ({chunk.rps:,.0f} req/s)  "
                f"total {run.requests:>10,}  RSS max {rss_max / 1024:5.1f} MiB, "
                f"at rest {after.rss_kib / 1024:5.1f} MiB"
                + (f"  errors {chunk.errors}" if chunk.errors else "")
            )

    def _check_deadline(self) -> None:
        if self.seconds_left() < 1:
            raise DeadlineReached(f"the deadline of {self.options.deadline:g} s passed")

    def execute(self) -> MemoryRun:
        options = self.options
        run = MemoryRun(
            scenario=self.scenario.key,
            connections=options.connections,
            wanted_requests=options.requests,
            warmup_requests=options.warmup_requests,
        )
        self.log(
            f"memory: graylane ({self.scenario.title}), {options.warmup_requests:,} requests of warm-up, "
            f"then {options.requests:,}; logs in {self.bench.run_dir}"
        )
        try:
            with self.bench.backend() as backend:
                process, port, _ = self.bench.proxy(self.scenario, GRAYLANE, 0)
                with process:
                    self._run(run, backend, process, port)
        except (RuntimeError, OSError, wrk.WrkOutputError) as exc:  # StartError, DeadlineReached among them
            run.stopped_early = run.stopped_early or str(exc).strip()[:500]
            self.log(f"stopped: {run.stopped_early}")
        return run

    def _run(self, run: MemoryRun, backend: Managed, process: Managed, port: int) -> None:
        self.warm_up(run, process, port)
        run.processes = len(process_tree(process.pid))
        run.after_warmup = self._at_rest(process)
        run.hwm_reset = reset_peak(process.pid)
        warm = run.after_warmup
        self.log(f"after warm-up: RSS {warm.rss_mib:.1f} MiB (VmHWM {warm.hwm_mib:.1f} MiB)")
        before = self._cpu_snapshot(backend, process)
        started = time.monotonic()
        try:
            self.measure(run, process, port)
        except DeadlineReached as exc:
            run.stopped_early = str(exc)
            self.log(f"stopped: {exc}")
        elapsed = time.monotonic() - started
        after = self._cpu_snapshot(backend, process)
        run.after = self._at_rest(process)
        if run.hwm_reset:
            run.peak_kib = max(run.peak_kib, run.after.hwm_kib)
        run.run_delay, run.noise = self._noise(before, after, elapsed)

    @staticmethod
    def _cpu_snapshot(backend: Managed, proxy: Managed) -> tuple[str, int, float, int]:
        """/proc/stat, the backend's CPU ticks, the CPU seconds of reaped children (wrk), the
        proxy's run delay."""
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            read_proc_stat(),
            backend.cpu_ticks(),
            children.ru_utime + children.ru_stime,
            proxy.run_delay_ns(),
        )

    def _noise(
        self, before: tuple[str, int, float, int], after: tuple[str, int, float, int], elapsed: float
    ) -> tuple[float | None, float | None]:
        """graylane's run delay share (it is alone on its CPU), and the share of the load CPUs that
        processes other than wrk and the backend took."""
        delay = delay_share(after[3] - before[3], elapsed)
        known = after[1] - before[1] + round((after[2] - before[2]) * CLOCK_TICKS)
        load = noise_share(before[0], after[0], [(parse_cpu_list(self.options.load_cpus), known)])
        shares = [s for s in (delay, load) if s is not None]
        return delay, (max(shares) if shares else None)

    def cleanup(self) -> None:
        self.bench.cleanup()


# --- the results ---------------------------------------------------------------------


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def render_markdown(
    run: MemoryRun, *, date: str, machine: dict[str, str], settings: dict[str, object]
) -> str:
    verdict = run.verdict()
    config = (
        "the canary config (split, version header, access log to a file, metrics)"
        if run.scenario == "canary"
        else "the plain small keep-alive config (access log and tracing off)"
    )
    lines = [
        f"### Memory of {date}",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()) + ".",
        "",
        f"Setup: graylane, 1 worker, {config}, pinned to CPU {settings.get('proxy_cpus')}; the nginx "
        f"backend and wrk -t1 -c{run.connections} on CPU {settings.get('load_cpus')}. "
        f"{run.warmup_done:,} requests of warm-up, then wrk runs of at most "
        f"{settings.get('chunk_seconds')} s until {run.wanted_requests:,} requests were done. VmRSS from "
        f"`/proc/PID/status`; the readings at rest {SETTLE_SECONDS:g} s after wrk ended.",
        "",
        "| figure | value | target | |",
        "| --- | --- | --- | --- |",
        f"| RSS after warm-up | {_mib(run.after_warmup.rss_kib if run.after_warmup else None)} | | |",
        f"| RSS after {run.requests:,} requests | {_mib(run.after.rss_kib if run.after else None)} | | |",
        f"| growth | {verdict.growth_mib:+.1f} MiB | <= {GROWTH_LIMIT_MIB:g} MiB "
        f"| {mark(verdict.growth_ok)} |",
        f"| peak RSS under load | {_mib(run.peak_kib or None)} | <= {RSS_LIMIT_MIB:g} MiB "
        f"| {mark(verdict.rss_ok)} |",
        "",
    ]
    rps = run.requests / run.seconds if run.seconds else 0.0
    notes = [
        f"{run.requests:,} requests in {run.seconds:.1f} s of load ({rps:,.0f} req/s) in {len(run.chunks)} "
        f"wrk runs, {run.errors} errors.",
    ]
    if run.chunks:
        steps = " -> ".join(f"{c.rss_after_kib / 1024:.1f}" for c in run.chunks)
        notes.append(f"RSS at rest after each wrk run (MiB): {steps}.")
    hwm = " and VmHWM (reset after the warm-up)" if run.hwm_reset else ""
    notes.append(f"peak: VmRSS sampled every {settings.get('sample_interval', 0.5):g} s under load{hwm}.")
    if run.after is not None and run.after.anon_kib is not None and run.after.file_kib is not None:
        notes.append(
            f"RSS after the run: {_mib(run.after.anon_kib)} anonymous (the heap), {_mib(run.after.file_kib)} "
            "file-backed (the interpreter, libraries and extensions, shared between workers)."
        )
    if run.noise is not None:
        notes.append(
            f"noise: {100 * run.noise:.0f}% (graylane's run delay and the share of the load CPU "
            "other processes took); memory figures hardly depend on it, req/s does."
        )
    if run.stopped_early:
        notes.append(f"stopped early: {run.stopped_early}.")
    lines += [f"- {note}" for note in notes]
    lines += ["", f"Verdict: **{verdict.summary()}**."]
    return "\n".join(lines) + "\n"


def results_document(
    run: MemoryRun, *, date: str, machine: dict[str, str], settings: dict[str, object]
) -> dict[str, object]:
    verdict = run.verdict()
    return {
        "date": date,
        "machine": machine,
        "settings": settings,
        "targets": {"rss_mib": RSS_LIMIT_MIB, "growth_mib": GROWTH_LIMIT_MIB},
        "rss_after_warmup_mib": run.after_warmup.rss_mib if run.after_warmup else None,
        "rss_after_mib": run.after.rss_mib if run.after else None,
        "growth_mib": None if math.isnan(run.growth_mib) else run.growth_mib,
        "peak_rss_mib": run.peak_mib if run.peak_kib else None,
        "requests": run.requests,
        "verdict": {
            "passed": verdict.passed,
            "rss_ok": verdict.rss_ok,
            "growth_ok": verdict.growth_ok,
            "complete": verdict.complete,
            "reasons": verdict.reasons(),
        },
        "run": asdict(run),
    }


def run_memory(
    options: MemoryOptions, log: Callable[[str], None] | None = None
) -> tuple[MemoryRun, str, Path]:
    """Run the memory benchmark and write its results: the run, its Markdown, the JSON's path."""
    bench = MemoryBench(options, log)
    try:
        run = bench.execute()
    finally:
        bench.cleanup()
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    machine = report.machine_info()
    settings: dict[str, object] = {
        "requests": options.requests,
        "warmup_requests": options.warmup_requests,
        "connections": options.connections,
        "chunk_seconds": options.chunk_seconds,
        "sample_interval": options.sample_interval,
        "deadline": options.deadline,
        "canary": options.canary,
        "load_cpus": options.load_cpus,
        "proxy_cpus": options.proxy_cpus,
        "pinned": shutil.which("taskset") is not None,
    }
    markdown = render_markdown(run, date=date, machine=machine, settings=settings)
    options.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = options.results_dir / RESULTS_NAME
    document = results_document(run, date=date, machine=machine, settings=settings)
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if options.docs_page is not None:
        page = options.docs_page
        page.write_text(replace_section(page.read_text() if page.exists() else "", markdown))
    return run, markdown, json_path


# --- the command line ----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.memory",
        description=f"graylane's RSS under load (targets: <= {RSS_LIMIT_MIB:g} MiB per worker, "
        f"growth <= {GROWTH_LIMIT_MIB:g} MiB over 1M requests)",
    )
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="measured requests (default 1M)"
    )
    parser.add_argument(
        "--warmup-requests",
        type=int,
        default=DEFAULT_WARMUP_REQUESTS,
        help="requests of warm-up (default 50000)",
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    parser.add_argument(
        "--chunk-seconds", type=int, default=10, help="whole seconds per wrk run at most (default 10)"
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.5,
        help="seconds between RSS samples under load (default 0.5)",
    )
    parser.add_argument(
        "--deadline", type=float, default=DEFAULT_DEADLINE, help="seconds for the whole run (default 900)"
    )
    parser.add_argument(
        "--canary", action="store_true", help="the canary config (access log to a file in the run directory)"
    )
    parser.add_argument("--load-cpus", default="0", help="CPUs of wrk and the backend (default 0)")
    parser.add_argument("--proxy-cpus", default="1", help="CPUs of graylane (default 1)")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help=f"where {RESULTS_NAME} goes")
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS_PAGE,
        help="page whose memory section gets the results (default: docs/performance.md, "
        f"updated only by a run of at least {DEFAULT_REQUESTS:,} requests)",
    )
    parser.add_argument("--no-docs", action="store_true", help="leave the docs page alone")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (configs, logs)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (
        args.requests < 1
        or args.warmup_requests < 0
        or args.connections < 1
        or args.chunk_seconds < 1
        or args.sample_interval <= 0
        or args.deadline <= 0
    ):
        print(
            "loadtest.memory: --requests, --connections and --chunk-seconds are at least 1, "
            "--warmup-requests at least 0, --sample-interval and --deadline above 0",
            file=sys.stderr,
        )
        return 2
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(
            f"loadtest.memory: {' and '.join(missing)} not found; install with `make system-deps` "
            "(or apt-get install nginx-light wrk)",
            file=sys.stderr,
        )
        return 2
    # A short run does not answer "growth over 1M requests": it leaves the default page alone.
    default_docs = args.docs == DOCS_PAGE
    docs = None if args.no_docs or (default_docs and args.requests < DEFAULT_REQUESTS) else args.docs
    options = MemoryOptions(
        requests=args.requests,
        warmup_requests=args.warmup_requests,
        connections=args.connections,
        chunk_seconds=args.chunk_seconds,
        sample_interval=args.sample_interval,
        deadline=args.deadline,
        canary=args.canary,
        load_cpus=args.load_cpus,
        proxy_cpus=args.proxy_cpus,
        results_dir=args.results,
        docs_page=docs,
        keep_logs=args.keep_logs,
    )
    stop_on_sigterm()
    try:
        run, markdown, json_path = run_memory(options)
    except KeyboardInterrupt:
        print("loadtest.memory: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    print(markdown)
    print(f"written: {json_path}", file=sys.stderr)
    if docs is not None:
        print(f"updated: {docs}", file=sys.stderr)
    return 0 if run.verdict().passed else 1


if __name__ == "__main__":
    sys.exit(main())
