"""From runs to results: medians, ratios to nginx in the same repetition, the Markdown
tables, latest.json, and the section of docs/performance.md between its markers.

Everything here is pure (no sockets, no processes) except ``machine_info``, which only reads
files and asks tools for their versions.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from loadtest.scenarios import REFERENCE, TARGET_TITLES, Scenario

BEGIN_MARKER = "<!-- loadtest:begin (written by python -m loadtest) -->"
END_MARKER = "<!-- loadtest:end -->"


@dataclass
class Run:
    """One measured wrk run against one target."""

    rep: int
    scenario: str
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    cpu_us_per_req: float | None  # None for the direct run (no proxy)
    noise: float | None = None  # share of the run other work took from it (loadtest.noise)
    socket_errors: int = 0
    non_2xx: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Row:
    """One (scenario, target): medians over repetitions and median per-repetition ratios to nginx."""

    scenario: str
    target: str
    reps: int = 0
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us_per_req: float | None = None
    rps_ratio: float | None = None
    p50_ratio: float | None = None
    p99_ratio: float | None = None
    cpu_ratio: float | None = None
    noise: float | None = None
    errors: int = 0  # socket errors + non-2xx, summed over repetitions
    note: str = ""  # e.g. "n/a (multi-worker not implemented)"


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def summarize(
    runs: Sequence[Run], scenarios: Sequence[Scenario], notes: dict[tuple[str, str], str] | None = None
) -> list[Row]:
    """Rows in scenario order, then target order; a (scenario, target) in ``notes`` is a row with
    that note and no figures."""
    notes = notes or {}
    by_key: dict[tuple[str, str, int], Run] = {(r.scenario, r.target, r.rep): r for r in runs}
    rows = []
    for scenario in scenarios:
        for target in scenario.targets:
            note = notes.get((scenario.key, target))
            mine = [r for r in runs if r.scenario == scenario.key and r.target == target]
            if note is None and not mine:
                continue  # not asked for (--targets): no row
            if note is not None:
                rows.append(Row(scenario.key, target, note=note))
                continue
            pairs = [(r, by_key.get((scenario.key, REFERENCE, r.rep))) for r in mine]
            pairs = [(r, ref) for r, ref in pairs if ref is not None]
            rows.append(
                Row(
                    scenario=scenario.key,
                    target=target,
                    reps=len(mine),
                    rps=_median(r.rps for r in mine),
                    p50_ms=_median(r.p50_ms for r in mine),
                    p99_ms=_median(r.p99_ms for r in mine),
                    cpu_us_per_req=_median(r.cpu_us_per_req for r in mine),
                    rps_ratio=_median(_ratio(r.rps, ref.rps) for r, ref in pairs),
                    p50_ratio=_median(_ratio(r.p50_ms, ref.p50_ms) for r, ref in pairs),
                    p99_ratio=_median(_ratio(r.p99_ms, ref.p99_ms) for r, ref in pairs),
                    cpu_ratio=_median(_ratio(r.cpu_us_per_req, ref.cpu_us_per_req) for r, ref in pairs),
                    noise=_median(r.noise for r in mine),
                    errors=sum(r.socket_errors + r.non_2xx for r in mine),
                )
            )
    return rows


# --- rendering -------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return out


def summary_table(rows: Sequence[Row], scenarios: Sequence[Scenario]) -> list[str]:
    """Targets down, scenarios across; each cell ``req/s ratio (CPU us/req)``."""
    targets = [t for t in TARGET_TITLES if any(r.target == t for r in rows)]
    cells = {(r.scenario, r.target): r for r in rows}
    lines = []
    for target in targets:
        line = [TARGET_TITLES[target]]
        for scenario in scenarios:
            row = cells.get((scenario.key, target))
            if row is None:
                line.append("")
            elif row.note:
                line.append(row.note)
            else:
                cpu = f" ({_num(row.cpu_us_per_req, 1)} us)" if row.cpu_us_per_req is not None else ""
                line.append(f"{_x(row.rps_ratio)}{cpu}")
        lines.append(line)
    return _table(["proxy", *(s.title for s in scenarios)], lines)


def detail_table(rows: Sequence[Row], scenarios: Sequence[Scenario]) -> list[str]:
    titles = {s.key: s.title for s in scenarios}
    lines = []
    for row in rows:
        if row.note:
            lines.append([titles[row.scenario], TARGET_TITLES[row.target], row.note, *[""] * 8])
            continue
        lines.append(
            [
                titles[row.scenario],
                TARGET_TITLES[row.target],
                _num(row.rps),
                _x(row.rps_ratio),
                _num(row.p50_ms, 2),
                _num(row.p99_ms, 2),
                _x(row.p99_ratio),
                _num(row.cpu_us_per_req, 1),
                _x(row.cpu_ratio),
                "-" if row.noise is None else f"{100 * row.noise:.0f}%",
                str(row.errors) if row.errors else "",
            ]
        )
    header = [
        "scenario",
        "proxy",
        "req/s",
        "x nginx",
        "p50 ms",
        "p99 ms",
        "p99 x nginx",
        "CPU us/req",
        "CPU x nginx",
        "noise",
        "errors",
    ]
    return _table(header, lines)


def render_markdown(
    rows: Sequence[Row],
    scenarios: Sequence[Scenario],
    *,
    date: str,
    machine: dict[str, str],
    settings: dict[str, object],
    notes: Sequence[str] = (),
) -> str:
    """The results as Markdown: what ran where, the summary, the details, and notes."""
    machine_line = ", ".join(f"{k} {v}" for k, v in machine.items())
    unpinned = "" if settings.get("pinned", True) else "; taskset missing: NOT pinned"
    out = [
        f"### Results of {date}",
        "",
        f"Machine: {machine_line}.",
        "",
        f"Setup: wrk -t{settings['threads']} -c{settings['connections']}, {settings['duration']:g} s per run "
        f"(after {settings['warmup']:g} s of warm-up), {settings['reps']} repetitions with the proxies "
        "interleaved and their order rotated, medians reported. The backend (nginx, 1 worker) and wrk "
        f"on CPU {settings['load_cpus']}; the proxy under test alone on CPU {settings['proxy_cpus']} "
        f"(one proxy runs at a time{unpinned}). Ratios are to nginx as a 1-worker reverse proxy "
        "(upstream keep-alive) in the same repetition, the median of the per-repetition ratios; "
        "CPU us/req is the CPU time (user + system) of the proxy's processes over the requests wrk "
        "completed. noise (median over repetitions): the share of the run the proxy waited for its "
        "CPU while other work ran (run delay); for the direct and 2-worker runs, the share of the "
        f"CPUs other processes took. Runs noisier than {100 * float(settings.get('max_noise', 1)):.0f}% "  # type: ignore[arg-type]
        "were measured again and the quietest attempt kept.",
        "",
        "req/s as a ratio to nginx (CPU microseconds per request):",
        "",
        *summary_table(rows, scenarios),
        "",
        *detail_table(rows, scenarios),
    ]
    if notes:
        out += ["", *[f"- {note}" for note in notes]]
    return "\n".join(out) + "\n"


def replace_section(document: str, section: str) -> str:
    """``document`` with the text between the markers replaced by ``section`` (markers added at
    the end when absent)."""
    block = f"{BEGIN_MARKER}\n{section.rstrip()}\n{END_MARKER}"
    pattern = re.compile(re.escape(BEGIN_MARKER) + r".*?" + re.escape(END_MARKER), re.S)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    return document.rstrip() + "\n\n" + block + "\n"


def results_document(
    runs: Sequence[Run],
    rows: Sequence[Row],
    *,
    date: str,
    machine: dict[str, str],
    settings: dict[str, object],
    notes: Sequence[str] = (),
) -> dict[str, object]:
    """What latest.json holds."""
    return {
        "date": date,
        "machine": machine,
        "settings": settings,
        "notes": list(notes),
        "rows": [asdict(r) for r in rows],
        "runs": [asdict(r) for r in runs],
    }


# --- the machine ---------------------------------------------------------------------


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` of /proc/cpuinfo's text."""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return match.group(1).strip() if match else "?"


def machine_info() -> dict[str, str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    nginx = _first_line(["nginx", "-v"]).removeprefix("nginx version: nginx/")
    wrk = re.sub(r"^wrk\s+(\S+).*$", r"\1", _first_line(["wrk", "-v"]))
    try:
        from proxy import _fast

        built = [n for n in ("http1", "hashing", "matching") if _fast.compiled(n) is not None]
        extensions = "compiled" if len(built) == 3 else f"partly compiled ({', '.join(built) or 'none'})"
        if os.environ.get("GRAYLANE_NO_EXTENSIONS"):
            extensions = "off (GRAYLANE_NO_EXTENSIONS)"
    except Exception:  # the report must not fail on a broken build: it says so instead
        extensions = "?"
    return {
        "nproc": str(os.cpu_count()),
        "CPU": cpu_model(cpuinfo),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "uvloop": _package("uvloop"),
        "nginx": nginx,
        "wrk": wrk,
        "aiohttp": _package("aiohttp"),
        "graylane": f"{_package('graylane')} (extensions {extensions})",
    }
