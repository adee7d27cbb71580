"""The processes of a benchmark run: started pinned to CPUs, ready when their ports accept,
measured in CPU ticks, stopped by their own PID (or their own process group) within a deadline."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_MAX_TREE = 256  # processes looked at under one root (a proxy has a master and a few workers)


def stop_on_sigterm() -> None:
    """Make SIGTERM (e.g. a timeout around make bench) unwind like Ctrl-C: every process gets stopped."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (nginx needs a port number in its config)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` under ``taskset -c CPUS`` when taskset exists and ``cpus`` is given."""
    if cpus is None or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", cpus, *argv]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (nginx's workers, graylane's workers)."""
    pids = [pid]
    index = 0
    while index < len(pids) and len(pids) < _MAX_TREE:
        pids += _children(pids[index])
        index += 1
    return pids


def stat_ticks(stat_line: str) -> int:
    """utime + stime of one ``/proc/PID/stat`` line (the command name may hold spaces and parens)."""
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted from 1


def cpu_ticks(pid: int) -> int:
    """CPU ticks (user + system) used so far by ``pid`` and its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                total += stat_ticks(f.read())
        except OSError:
            continue  # exited between the listing and the read
    return total


def schedstat_delay_ns(text: str) -> int:
    """The run delay (ns runnable but waiting for a CPU) of one ``/proc/.../schedstat`` line."""
    fields = text.split()
    return int(fields[1]) if len(fields) >= 2 else 0


def run_delay_ns(pid: int) -> int:
    """Run delay so far of every thread of ``pid`` and of its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{member}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{member}/task/{task}/schedstat") as f:
                    total += schedstat_delay_ns(f.read())
            except OSError:
                continue
    return total


def wait_for_port(port: int, deadline: float, alive: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll until 127.0.0.1:port accepts a connection (True), the process exits or the deadline passes."""
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)  # nginx and the peers announce readiness nowhere else
    return False


class StartError(RuntimeError):
    """A process exited or did not listen in time; the message ends with its log."""


class Managed:
    """One child process: its own session (so its workers can be stopped as a group), output
    to ``log_path``, ready when every port in ``ports`` accepts."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        ports: Sequence[int],
        log_path: Path,
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = pinned(argv, cpus)
        self.ports = list(ports)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.popen.pid

    def start(self, timeout: float = 20.0) -> Managed:
        env = None if self.env is None else {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            if not wait_for_port(port, deadline, self.popen):
                self.stop()
                raise StartError(
                    f"{self.name} did not listen on {port}: {' '.join(self.argv)}\n{self.log_tail()}"
                )
        return self

    def cpu_ticks(self) -> int:
        return cpu_ticks(self.pid)

    def run_delay_ns(self) -> int:
        return run_delay_ns(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Signal our PID, wait; past ``timeout`` kill the process group we created."""
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(self.stop_signal)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)  # the group is ours: start_new_session above
            popen.wait(5.0)

    def __enter__(self) -> Managed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def core_times(proc_stat: str, cpus: Sequence[int]) -> dict[str, int]:
    """Ticks of the ``cpuN`` lines of /proc/stat for ``cpus``, summed by kind: ``tasks`` (user + nice
    + system: what processes ran), ``irq`` (irq + softirq: the network stack's share on loopback),
    ``steal`` (the hypervisor's) and ``idle`` (idle + iowait)."""
    totals = {"tasks": 0, "irq": 0, "steal": 0, "idle": 0}
    wanted = {f"cpu{n}" for n in cpus}
    for line in proc_stat.splitlines():
        name, _, rest = line.partition(" ")
        if name not in wanted:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in rest.split()[:8])
        totals["tasks"] += user + nice + system
        totals["irq"] += irq + softirq
        totals["steal"] += steal
        totals["idle"] += idle + iowait
    return totals


def read_proc_stat() -> str:
    try:
        with open("/proc/stat") as f:
            return f.read()
    except OSError:
        return ""


def parse_cpu_list(text: str) -> list[int]:
    """taskset's CPU list syntax (``0``, ``0,1``, ``0-3,6``) as numbers."""
    cpus: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first:
            cpus += range(int(first), int(last or first) + 1)
    return cpus
