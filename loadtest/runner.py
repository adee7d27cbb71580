"""The benchmark run: backend up, then for each repetition, scenario and proxy (order rotated
every repetition) start the proxy alone on its CPU, warm it up, measure one wrk run and the
proxy's CPU ticks around it, stop it. Results go to loadtest/results/latest.{json,md} and the
section of docs/performance.md between its markers.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtest import nginx, report, wrk
from loadtest.noise import delay_share, noise_notes, noise_share
from loadtest.procs import (
    CLOCK_TICKS,
    Managed,
    free_port,
    parse_cpu_list,
    pinned,
    process_tree,
    read_proc_stat,
)
from loadtest.report import Row, Run
from loadtest.scenarios import AIOHTTP, DIRECT, GRAYLANE, NGINX, REFERENCE, TARGETS, Scenario, graylane_config

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "loadtest" / "results"
DOCS_PAGE = ROOT / "docs" / "performance.md"
MULTI_WORKER_NA = "n/a (multi-worker not implemented)"
VERSIONS = ("v1", "v2")


@dataclass
class Options:
    duration: int = 10  # seconds (wrk takes whole seconds)
    reps: int = 3
    warmup: int = 1  # seconds; 0: none
    scenarios: list[Scenario] = field(default_factory=list)
    targets: tuple[str, ...] = TARGETS
    threads: int = 1
    connections: int = 64
    load_cpus: str = "0"  # wrk and the backend
    proxy_cpus: str = "1"  # the proxy under test
    results_dir: Path = RESULTS_DIR
    docs_page: Path | None = DOCS_PAGE
    keep_logs: bool = False
    max_noise: float = 0.25  # a run whose noise is above this is measured again ...
    retries: int = 1  # ... at most this many times; the quietest attempt is kept
    python: str = sys.executable


@dataclass
class Outcome:
    runs: list[Run]
    rows: list[Row]
    markdown: str
    json_path: Path
    markdown_path: Path


def rotated(items: Sequence[str], shift: int) -> list[str]:
    """``items`` rotated left by ``shift``: each repetition starts with a different proxy."""
    if not items:
        return []
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def plan(scenarios: Sequence[Scenario], targets: Sequence[str], reps: int) -> list[tuple[int, Scenario, str]]:
    """The order of the runs: repetitions outermost, scenarios, then the proxies rotated."""
    order = []
    for rep in range(reps):
        for scenario in scenarios:
            mine = [t for t in scenario.targets if t in targets]
            order += [(rep, scenario, target) for target in rotated(mine, rep)]
    return order


_REQUESTS_LINE = re.compile(r"^graylane_requests_total\{([^}]*)\}\s+([0-9.e+]+)\s*$", re.M)
_VERSION_LABEL = re.compile(r'(?:^|,)version="([^"]*)"')


def versions_from_metrics(text: str) -> dict[str, int]:
    """Requests per version from graylane's Prometheus exposition."""
    counts: dict[str, int] = {}
    for labels, value in _REQUESTS_LINE.findall(text):
        version = _VERSION_LABEL.search(labels)
        if version:
            counts[version.group(1)] = counts.get(version.group(1), 0) + int(float(value))
    return counts


def cpu_us_per_request(ticks: int, requests: int, ticks_per_second: int = CLOCK_TICKS) -> float | None:
    """CPU microseconds per request from a tick count."""
    if requests <= 0:
        return None
    return ticks / ticks_per_second * 1e6 / requests


class Bench:
    def __init__(self, options: Options, log: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.run_dir = Path(tempfile.mkdtemp(prefix="graylane-bench-"))
        self.run_dir.chmod(0o755)  # nginx workers (not root) read the static file below it
        self.scripts = wrk.write_scripts(self.run_dir)
        self.backend_ports = {v: free_port() for v in VERSIONS}
        self.notes: dict[tuple[str, str], str] = {}
        self.messages: list[str] = []
        self.runs: list[Run] = []
        self.backend_process: Managed | None = None

    # --- processes -------------------------------------------------------------------

    def _nginx(self, name: str, text: str, ports: Sequence[int], cpus: str | None) -> Managed:
        (self.run_dir / f"{name}-temp").mkdir(exist_ok=True)
        conf = self.run_dir / f"{name}.conf"
        conf.write_text(text)
        argv = ["nginx", "-e", "stderr", "-p", str(self.run_dir), "-c", str(conf)]
        return Managed(name, argv, ports=ports, log_path=self.run_dir / f"{name}.log", cpus=cpus)

    def backend(self) -> Managed:
        root = self.run_dir / "www"
        nginx.write_static(root)
        text = nginx.backend_conf(self.run_dir, self.backend_ports, root)
        return self._nginx("backend", text, list(self.backend_ports.values()), self.options.load_cpus)

    def proxy_cpus(self, scenario: Scenario) -> str:
        # Several workers pinned to one CPU would measure nothing: they get every CPU.
        if scenario.workers > 1:
            return ",".join(sorted({*self.options.load_cpus.split(","), *self.options.proxy_cpus.split(",")}))
        return self.options.proxy_cpus

    def proxy(self, scenario: Scenario, target: str, rep: int) -> tuple[Managed, int, dict[str, object]]:
        """The proxy ``target`` configured for ``scenario`` (not started), its port, and facts
        the run records (the admin port, the access log path)."""
        port = free_port()
        tag = f"{target}-{scenario.key}-{rep}"
        cpus = self.proxy_cpus(scenario)
        upstreams = self.backend_ports if scenario.canary else dict(list(self.backend_ports.items())[:1])
        facts: dict[str, object] = {}
        if target == NGINX:
            text = nginx.proxy_conf(
                self.run_dir, tag, port, upstreams, workers=scenario.workers, canary=scenario.canary
            )
            return self._nginx(tag, text, [port], cpus), port, facts
        if target == GRAYLANE:
            access_log = self.run_dir / f"{tag}-access.log" if scenario.canary else None
            admin_port = free_port() if scenario.canary else None
            conf = self.run_dir / f"{tag}.yaml"
            conf.write_text(
                graylane_config(scenario, port, upstreams, access_log=access_log, admin_port=admin_port)
            )
            argv = [self.options.python, "-m", "proxy", "run", "-c", str(conf)]
            facts = {"admin_port": admin_port, "access_log": access_log}
            ports = [port] + ([admin_port] if admin_port else [])
            return (
                Managed(tag, argv, ports=ports, log_path=self.run_dir / f"{tag}.log", cpus=cpus, cwd=ROOT),
                port,
                facts,
            )
        if target == AIOHTTP:
            argv = [self.options.python, "-m", "loadtest.aiohttp_proxy", "--port", str(port)]
            for version, upstream_port in upstreams.items():
                argv += ["--upstream", f"{version}=127.0.0.1:{upstream_port}"]
            if scenario.canary:
                argv += ["--canary", "--access-log", str(self.run_dir / f"{tag}-access.log")]
            return (
                Managed(tag, argv, ports=[port], log_path=self.run_dir / f"{tag}.log", cpus=cpus, cwd=ROOT),
                port,
                facts,
            )
        raise ValueError(f"no proxy called {target}")

    def graylane_accepts_workers(self) -> bool:
        """Whether ``graylane check`` accepts ``workers: 2`` (the multi-worker scenario runs only then)."""
        probe = next(s for s in self.options.scenarios if s.workers > 1)
        conf = self.run_dir / "workers-probe.yaml"
        conf.write_text(graylane_config(probe, 1, {"v1": 1}))
        done = subprocess.run(
            [self.options.python, "-m", "proxy", "check", "-c", str(conf)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode == 0

    # --- one run ---------------------------------------------------------------------

    def _wrk(self, scenario: Scenario, port: int, duration: int) -> wrk.WrkResult:
        script = self.scripts[scenario.script] if scenario.script else None
        argv = wrk.command(
            f"http://127.0.0.1:{port}{scenario.path}",
            duration=duration,
            threads=self.options.threads,
            connections=self.options.connections,
            script=script,
            headers=scenario.headers,
        )
        done = subprocess.run(
            pinned(argv, self.options.load_cpus), capture_output=True, text=True, timeout=duration + 60
        )
        if done.returncode != 0:
            output = (done.stderr + done.stdout).strip()[:500]
            raise wrk.WrkOutputError(f"wrk exited {done.returncode}: {output}")
        return wrk.parse_output(done.stdout)

    def _snapshot(self, proxy: Managed | None) -> tuple[str, int, float]:
        """/proc/stat, the CPU ticks of the backend and the proxy, the CPU seconds of reaped children."""
        ticks = self.backend_process.cpu_ticks() if self.backend_process is not None else 0
        if proxy is not None:
            ticks += proxy.cpu_ticks()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return read_proc_stat(), ticks, children.ru_utime + children.ru_stime

    def _window(
        self, scenario: Scenario, port: int, proxy: Managed | None
    ) -> tuple[wrk.WrkResult, int, float | None]:
        """One measured wrk run: its result, the proxy's CPU ticks, and the run's noise.

        A proxy alone on its CPUs: the noise is the share of the run it spent runnable but
        waiting for a CPU (its run delay): time other work took from it. The direct run, and
        a proxy sharing the load's CPUs: the share of those CPUs that processes other than
        ours (and steal) took, since there wrk and the backend keep the CPUs busy."""
        load = parse_cpu_list(self.options.load_cpus)
        mine = parse_cpu_list(self.proxy_cpus(scenario)) if proxy is not None else []
        alone = proxy is not None and not set(mine) & set(load)
        stat_before, known_before, children_before = self._snapshot(proxy)
        proxy_before = proxy.cpu_ticks() if proxy is not None else 0
        delay_before = proxy.run_delay_ns() if proxy is not None else 0
        started = time.monotonic()
        result = self._wrk(scenario, port, self.options.duration)
        elapsed = time.monotonic() - started
        delay = proxy.run_delay_ns() - delay_before if proxy is not None else 0
        proxy_ticks = proxy.cpu_ticks() - proxy_before if proxy is not None else 0
        stat_after, known_after, children_after = self._snapshot(proxy)
        if alone:
            return result, proxy_ticks, delay_share(delay, elapsed)
        wrk_ticks = round((children_after - children_before) * CLOCK_TICKS)  # wrk is the child reaped here
        known = known_after - known_before + wrk_ticks
        cpus = sorted(set(mine) | set(load))
        return result, proxy_ticks, noise_share(stat_before, stat_after, [(cpus, known)])

    def measure_quietly(self, rep: int, scenario: Scenario, target: str, label: str) -> Run:
        """``measure``, again while the noise is above ``max_noise`` (``retries`` times at most);
        the quietest attempt is kept."""
        attempts = 1 + max(0, self.options.retries)
        best = None
        for attempt in range(1, attempts + 1):
            run = self.measure(rep, scenario, target)
            if best is None or _quieter(run, best):
                best = run
            if run.noise is None or run.noise <= self.options.max_noise:
                break
            if attempt < attempts:
                self.log(f"{label} {describe(run)}  (noisy: measuring again)")
        assert best is not None
        return best

    def measure(self, rep: int, scenario: Scenario, target: str) -> Run:
        if target == DIRECT:
            port = self.backend_ports["v1"]
            if self.options.warmup > 0:
                self._wrk(scenario, port, self.options.warmup)
            result, _, noise = self._window(scenario, port, None)
            return self._run(rep, scenario, target, result, None, noise)
        process, port, facts = self.proxy(scenario, target, rep)
        with process:
            if self.options.warmup > 0:
                self._wrk(scenario, port, self.options.warmup)
            processes = len(process_tree(process.pid))
            if target == GRAYLANE and scenario.workers > 1 and processes < 2:
                # The config took ``workers`` but one process serves: not the scenario.
                self.notes[(scenario.key, target)] = MULTI_WORKER_NA
                raise RuntimeError(f"graylane accepted workers: {scenario.workers} but runs one process")
            result, ticks, noise = self._window(scenario, port, process)
            extra: dict[str, object] = {"cpu_ticks": ticks, "processes": processes}
            if facts.get("admin_port"):
                extra["versions"] = self._scrape_versions(int(facts["admin_port"]))  # type: ignore[call-overload]
        access_log = facts.get("access_log")
        if isinstance(access_log, Path) and access_log.exists():
            with access_log.open("rb") as f:
                extra["access_log_lines"] = sum(1 for _ in f)
        cpu = cpu_us_per_request(ticks, result.requests)
        return self._run(rep, scenario, target, result, cpu, noise, extra)

    def _scrape_versions(self, admin_port: int) -> dict[str, int]:
        url = f"http://127.0.0.1:{admin_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return versions_from_metrics(answer.read().decode())
        except OSError as exc:
            self.log(f"  /metrics: {exc}")
            return {}

    @staticmethod
    def _run(
        rep: int,
        scenario: Scenario,
        target: str,
        result: wrk.WrkResult,
        cpu: float | None,
        noise: float | None,
        extra: dict[str, object] | None = None,
    ) -> Run:
        return Run(
            rep=rep,
            scenario=scenario.key,
            target=target,
            rps=result.rps,
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            requests=result.requests,
            seconds=result.seconds,
            cpu_us_per_req=cpu,
            noise=noise,
            socket_errors=result.socket_errors,
            non_2xx=result.non_2xx,
            extra=extra or {},
        )

    # --- the whole benchmark -----------------------------------------------------------

    def execute(self) -> list[Run]:
        options = self.options
        targets = list(options.targets)
        if AIOHTTP in targets and not _importable("aiohttp"):
            for scenario in options.scenarios:
                self.notes[(scenario.key, AIOHTTP)] = "n/a (aiohttp not installed)"
            self.messages.append("aiohttp is not installed: `.venv/bin/pip install -e '.[bench]'` adds it.")
        if (
            GRAYLANE in targets
            and any(s.workers > 1 for s in options.scenarios)
            and not self.graylane_accepts_workers()
        ):
            for scenario in options.scenarios:
                if scenario.workers > 1:
                    self.notes[(scenario.key, GRAYLANE)] = MULTI_WORKER_NA
        for scenario in options.scenarios:
            if scenario.workers > 1:
                self.messages.append(
                    f"{scenario.title}: the proxy may use every CPU (pinned to {self.proxy_cpus(scenario)}), "
                    "so it shares CPU0 with wrk and the backend."
                )
        order = [
            (r, s, t)
            for r, s, t in plan(options.scenarios, targets, options.reps)
            if (s.key, t) not in self.notes
        ]
        self.log(f"benchmark: {len(order)} runs of {options.duration:g} s; logs in {self.run_dir}")
        with self.backend() as backend:
            self.backend_process = backend
            for index, (rep, scenario, target) in enumerate(order, 1):
                if (scenario.key, target) in self.notes:
                    continue
                label = f"[{index}/{len(order)}] rep {rep + 1} {scenario.key:<9} {target:<9}"
                try:
                    run = self.measure_quietly(rep, scenario, target, label)
                except (wrk.WrkOutputError, subprocess.TimeoutExpired, RuntimeError) as exc:
                    self.log(f"{label} FAILED: {exc}")
                    self.messages.append(
                        f"{scenario.title} / {target}, repetition {rep + 1}: failed ({exc})"[:300]
                    )
                    continue
                self.runs.append(run)
                self.log(f"{label} {describe(run)}")
            self.backend_process = None
        return self.runs

    def cleanup(self) -> None:
        if not self.options.keep_logs:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _quieter(run: Run, other: Run) -> bool:
    return (run.noise if run.noise is not None else 1.0) < (other.noise if other.noise is not None else 1.0)


def describe(run: Run) -> str:
    """One progress line's figures."""
    cpu = f"  {run.cpu_us_per_req:6.1f} us/req" if run.cpu_us_per_req is not None else ""
    noise = f"  noise {100 * run.noise:3.0f}%" if run.noise is not None else ""
    errors = f"  errors {run.socket_errors}+{run.non_2xx}" if run.socket_errors or run.non_2xx else ""
    versions = f"  versions {run.extra['versions']}" if run.extra.get("versions") else ""
    latency = f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms"
    return f"{run.rps:>9,.0f} req/s  {latency}{cpu}{noise}{errors}{versions}"


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def canary_notes(runs: Sequence[Run]) -> list[str]:
    """The split graylane's /metrics reported in the canary runs (a check that it really split)."""
    totals: dict[str, int] = {}
    for run in runs:
        versions = run.extra.get("versions")
        if run.target == GRAYLANE and isinstance(versions, dict):
            for version, count in versions.items():
                totals[version] = totals.get(version, 0) + int(count)
    total = sum(totals.values())
    if not total:
        return []
    shares = ", ".join(f"{v} {100 * c / total:.1f}%" for v, c in sorted(totals.items()))
    return [f"canary: graylane's /metrics counted {total:,} requests: {shares} (1000 users, sticky 90/10)."]


def run_benchmark(options: Options, log: Callable[[str], None] | None = None) -> Outcome:
    """Run everything ``options`` asks for and write the results."""
    bench = Bench(options, log)
    try:
        runs = bench.execute()
    finally:
        bench.cleanup()
    scenarios = options.scenarios
    notes = {k: v for k, v in bench.notes.items() if k[1] in options.targets}
    rows = report.summarize(runs, scenarios, notes)
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    machine = report.machine_info()
    settings: dict[str, object] = {
        "duration": options.duration,
        "reps": options.reps,
        "warmup": options.warmup,
        "threads": options.threads,
        "connections": options.connections,
        "load_cpus": options.load_cpus,
        "proxy_cpus": options.proxy_cpus,
        "scenarios": [s.key for s in scenarios],
        "targets": list(options.targets),
        "pinned": shutil.which("taskset") is not None,
        "max_noise": options.max_noise,
        "retries": options.retries,
        "reference": REFERENCE,
    }
    messages = [*canary_notes(runs), *noise_notes(runs, options.max_noise), *dict.fromkeys(bench.messages)]
    markdown = report.render_markdown(
        rows, scenarios, date=date, machine=machine, settings=settings, notes=messages
    )
    options.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = options.results_dir / "latest.json"
    markdown_path = options.results_dir / "latest.md"
    document = report.results_document(
        runs, rows, date=date, machine=machine, settings=settings, notes=messages
    )
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    markdown_path.write_text(markdown)
    if options.docs_page is not None:
        page = options.docs_page
        page.write_text(report.replace_section(page.read_text() if page.exists() else "", markdown))
    return Outcome(runs, rows, markdown, json_path, markdown_path)
