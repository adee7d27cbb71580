"""The supervisor of a multi-worker graylane (``workers: N``).

Theory of operation
-------------------
The supervisor serves no traffic. It resolves the listener addresses (a ``:0`` port
is bound once here, with SO_REUSEPORT, so every worker gets the same port), starts
N workers (``python -m proxy worker``) that each open their own SO_REUSEPORT
listening sockets (the kernel spreads connections), and holds what must be one per
host: the admin API, config reload, and the sums of the workers' counters.

It also creates the directory of the tables the workers share (the buckets of local
rate limits, ``proxy.policy.ratelimit_shared``): under /dev/shm when there is one, named
to the workers in ``GRAYLANE_SHARED_DIR``, removed when the supervisor exits. Restarted
workers open the same tables, so a crash resets no limit.

Workers report cumulative counters once a second (``proxy.runtime.ipc``). A worker
that exits without being asked is started again (with a growing pause if it keeps
crashing); the counters of its last report are folded into ``retired`` (one running
total per kind, so memory stays bounded whatever the number of restarts) so that sums
never go backwards. Gauges (connections, pools, endpoint health) come from live workers.

Each worker runs its own health checks and outlier detection and ejects endpoints on its
own evidence (as each Envoy instance does); /status shows, per endpoint, the worst state
any live worker holds and in how many workers.

Signals: SIGHUP checks the new config here first and, if it compiles, passes the
SIGHUP on (a bad config never reaches a worker); SIGTERM passes on and waits for
the workers to drain; SIGINT passes on and exits; SIGUSR1 passes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

from proxy.admin.status import status_document
from proxy.config.schema import Config
from proxy.errors import GraylaneError, StartupError
from proxy.observe.counters import Snapshot
from proxy.observe.metrics import render_metrics
from proxy.observe.stats import Stats
from proxy.observe.window import Window
from proxy.policy.metrics import policy_families
from proxy.policy.ratelimit_shared import SHARED_DIR_ENV
from proxy.rollout.controller import RolloutController
from proxy.rollout.metrics import health_families, rollout_families
from proxy.rollout.overrides import apply_weights
from proxy.runtime.ipc import (
    MergedEndpoints,
    Retired,
    WorkerReport,
    add_counts,
    merge_endpoints,
    merge_policy,
    merge_snapshots,
    merge_stats,
    read_report,
)
from proxy.runtime.listener import open_socket, split_address
from proxy.runtime.server import build_table, refused_reload, worker_count
from proxy.runtime.worker import worker_env

log = logging.getLogger("graylane")

RESTART_PAUSE = 0.5  # first pause before restarting a crashed worker; doubles up to MAX_RESTART_PAUSE
MAX_RESTART_PAUSE = 30.0
STABLE_AFTER = 60.0  # a worker that lived this long resets the pause


class WorkerHandle:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.last: WorkerReport | None = None
        self.ready = asyncio.Event()
        self.started = 0.0
        self.pause = RESTART_PAUSE
        self.reader: asyncio.Task[None] | None = None
        self.writer: asyncio.StreamWriter | None = None


class Supervisor:
    def __init__(self, config: Config, path: str, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.path = path
        self.loop = loop
        self.count = worker_count(config)
        self.workers = [WorkerHandle(i) for i in range(self.count)]
        self.signals: asyncio.Queue[int] = asyncio.Queue()
        self.stopping = False
        self.draining = False
        self.retired = Retired()  # the counters of exited workers, folded
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.restarts = 0
        self.window = Window(self)  # type: ignore[arg-type]  # duck-typed: snapshot(at)
        self.reservations: list[socket.socket] = []
        self.addresses: list[str] = []
        self.admin: Any = None
        self.startup_failed = asyncio.Event()
        self.shared_dir: str | None = None  # made by make_shared_dir(), removed by remove_shared_dir()
        # The rollouts of every worker are decided here, from the summed counters; workers
        # read the weights from the state file the controller writes (SIGUSR2 says when).
        self.rollouts = RolloutController(config, self, self._rollout_weights, clock=loop.time)
        # Compiled here too: /status reads it, reload checks it.
        self.table = build_table(apply_weights(config, self.rollouts.weights()))

    # --- the counters, summed over workers ------------------------------------

    def snapshot(self, at: float = 0.0) -> Snapshot:
        live = [w.last.counters for w in self.workers if w.last is not None]
        return merge_snapshots(self.retired.snapshots() + live, at)

    def merged_stats(self) -> Stats:
        live = [w.last.stats for w in self.workers if w.last is not None]
        stats = merge_stats([self.retired.stats, *live])
        # Reloads happen here; the workers' own reload counters would count each one N times.
        stats.reloads_ok = self.reloads_ok
        stats.reloads_failed = self.reloads_failed
        return stats

    def merged_policy(self) -> dict[str, Any]:
        """The policy counters of every worker, summed (``PolicyRuntime.snapshot()``-shaped)."""
        live = [w.last.policy for w in self.workers if w.last is not None]
        return merge_policy(live, [self.retired.policy])

    def merged_health(self) -> dict[str, int]:
        """The health monitors' counters (ejections, skipped, changes), summed over workers."""
        live = [w.last.health for w in self.workers if w.last is not None]
        return add_counts([self.retired.health, *live])

    def merged_endpoints(self) -> MergedEndpoints:
        """Each endpoint's pool connections and health marks over the live workers."""
        return merge_endpoints([r.endpoints for r in self.reports()])

    def reports(self) -> list[WorkerReport]:
        return [w.last for w in self.workers if w.last is not None]

    def retire(self, handle: WorkerHandle) -> None:
        """A worker exited: fold the counters of its last report into ``retired``."""
        if handle.last is not None:
            self.retired.fold(handle.last)
            handle.last = None

    # --- start ---------------------------------------------------------------

    def resolve_addresses(self) -> None:
        """Bind each listener address once (not listening) so that ``:0`` becomes one real port."""
        for listener in self.config.listeners:
            sock = open_socket(listener.address, reuse_port=True, listen=False)
            self.reservations.append(sock)
            host, _ = split_address(listener.address)
            port = sock.getsockname()[1]
            self.addresses.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    def make_shared_dir(self) -> None:
        """The directory of the tables the workers share (memory when /dev/shm exists)."""
        shm = "/dev/shm"
        where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
        try:
            self.shared_dir = tempfile.mkdtemp(prefix=f"graylane-{os.getpid()}-", dir=where)
        except OSError as exc:
            raise StartupError(f"cannot create the directory shared by the workers: {exc}") from exc

    def remove_shared_dir(self) -> None:
        if self.shared_dir is not None:
            shutil.rmtree(self.shared_dir, ignore_errors=True)
            self.shared_dir = None

    async def start_workers(self) -> None:
        for handle in self.workers:
            await self._spawn(handle)
        all_ready = asyncio.ensure_future(asyncio.gather(*(w.ready.wait() for w in self.workers)))
        failed = asyncio.ensure_future(self.startup_failed.wait())
        done, _ = await asyncio.wait([all_ready, failed], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        failed.cancel()
        if all_ready not in done:
            all_ready.cancel()
            all_ready.add_done_callback(lambda future: future.cancelled() or future.exception())
            raise StartupError("a worker did not start (see its messages above)")
        for address in self.addresses:
            log.info("listening on %s (%d workers)", address, self.count)

    async def _spawn(self, handle: WorkerHandle) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env.update(worker_env(handle.index, child.fileno(), self.addresses))
        if self.shared_dir is not None:
            env[SHARED_DIR_ENV] = self.shared_dir
        handle.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.runtime.worker", self.path, pass_fds=(child.fileno(),), env=env
        )
        child.close()
        handle.started = self.loop.time()
        # Keep the writer: a collected StreamWriter closes its transport.
        reader, handle.writer = await asyncio.open_unix_connection(sock=parent)
        handle.reader = self.loop.create_task(self._read_reports(handle, reader))
        self.loop.create_task(self._watch(handle, handle.process))

    async def _read_reports(self, handle: WorkerHandle, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                handle.last = await read_report(reader)
                handle.ready.set()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass

    async def _watch(self, handle: WorkerHandle, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        # Let the reader take the worker's final report (sent while exiting) before it is retired.
        if handle.reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(handle.reader), 2.0)
            except TimeoutError:
                # A report read after the fold would be counted twice (retired and live).
                handle.reader.cancel()
        if not handle.ready.is_set():
            self.startup_failed.set()
        self.retire(handle)
        if self.stopping:
            return
        lived = self.loop.time() - handle.started
        handle.pause = RESTART_PAUSE if lived > STABLE_AFTER else min(handle.pause * 2, MAX_RESTART_PAUSE)
        index, pid = handle.index, process.pid
        log.error("worker %d (pid %d) exited with %s; restarting in %gs", index, pid, code, handle.pause)
        self.restarts += 1
        await asyncio.sleep(handle.pause)
        if not self.stopping:
            handle.ready = asyncio.Event()
            await self._spawn(handle)

    # --- signals -----------------------------------------------------------------

    def catch_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            self.loop.add_signal_handler(signum, self.signals.put_nowait, signum)

    def _signal_workers(self, signum: int) -> None:
        for handle in self.workers:
            process = handle.process
            if process is not None and process.returncode is None:
                process.send_signal(signum)

    async def serve(self) -> int:
        ticker = self.loop.create_task(self._tick_forever())
        self.rollouts.start()
        try:
            while True:
                signum = await self.signals.get()
                if signum == signal.SIGHUP:
                    self.reload()
                elif signum == signal.SIGUSR1:
                    self._signal_workers(signal.SIGUSR1)
                else:
                    await self.stop(signum)
                    return 0
        finally:
            ticker.cancel()
            await self.rollouts.stop()

    def _rollout_weights(self, weights: dict[str, dict[str, int]]) -> None:
        self.table = build_table(apply_weights(self.config, weights))
        log.info("rollout weights now %s", weights)
        self.loop.create_task(self._tell_workers(signal.SIGUSR2))

    async def _tell_workers(self, signum: int) -> None:
        """Signal the workers once the rollout state they will read is on disk."""
        await self.rollouts.flush()
        self._signal_workers(signum)

    async def _tick_forever(self) -> None:
        self.window.tick(self.loop.time())
        while True:
            await asyncio.sleep(1.0)
            self.window.tick(self.loop.time())

    def reload(self) -> list[str]:
        from proxy.config.load import load_config

        try:
            config = load_config(self.path)
            table = build_table(config)
        except GraylaneError as exc:
            self.reloads_failed += 1
            return refused_reload(exc)
        if worker_count(config) != self.count or config.listeners != self.config.listeners:
            log.warning("changes to workers or listeners take effect only after a restart")
        weights = self.rollouts.reload(config)
        self.config = config
        self.table = build_table(apply_weights(config, weights)) if weights else table
        self.reloads_ok += 1
        self.loop.create_task(self._tell_workers(signal.SIGHUP))
        log.info("configuration reloaded from %s (%d workers)", self.path, self.count)
        return []

    async def stop(self, signum: int) -> None:
        self.stopping = True
        self.draining = True
        name = "SIGTERM: draining" if signum == signal.SIGTERM else "SIGINT: stopping"
        log.info("%s %d worker(s)", name, self.count)
        self._signal_workers(signum)
        deadline = self.config.limits.drain_timeout + 5.0 if signum == signal.SIGTERM else 5.0
        processes = [w.process for w in self.workers if w.process is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), deadline)
        except TimeoutError:
            log.warning("workers did not stop in time: killing them")
            self._signal_workers(signal.SIGKILL)
        if self.admin is not None:
            self.admin.close()
        for sock in self.reservations:
            sock.close()
        log.info("all workers stopped, exiting")

    # --- what the admin API shows ------------------------------------------------

    def ready_state(self) -> str:
        if self.draining:
            return "draining"
        if not all(w.ready.is_set() for w in self.workers):
            return "starting"
        return "ready"

    def stats_document(self) -> dict[str, Any]:
        document = self.merged_stats().snapshot()
        document.update(self.connection_totals())
        document["mirror"] = self.mirror_totals()
        document["routing"] = self.routing_totals()
        document["workers"] = self.count
        document["worker_restarts"] = self.restarts
        return document

    def metrics_text(self) -> bytes:
        totals = self.connection_totals()
        extra = {
            "client_connections": totals["connections_open"],
            "mirror_dropped": self.mirror_totals().get("dropped", 0),
        }
        pools = (totals["upstream_active"], totals["upstream_idle"])
        snapshot = self.snapshot(self.loop.time())
        # The same families as a single process (Server.metrics_text), from the workers' sums.
        families = health_families(self.merged_health()) + policy_families(self.merged_policy())
        families += rollout_families(self.rollouts)
        return render_metrics(snapshot, self.merged_stats(), pools, extra, families)

    def status_document(self, seconds: float) -> dict[str, Any]:
        per_version = self.window.per_version(seconds)
        merged = self.merged_endpoints()
        document = status_document(self.table.config, self.table, per_version, None, seconds, merged=merged)
        document["draining"] = self.draining
        document["rollouts"] = self.rollouts.status()["rollouts"]
        document["workers"] = [
            {"index": w.index, "pid": w.process.pid if w.process else None, "ready": w.ready.is_set()}
            for w in self.workers
        ]
        return document

    def rollout_command(self, route: str, action: str) -> dict[str, Any]:
        return self.rollouts.command(route, action)

    def rollouts_document(self) -> dict[str, Any]:
        return self.rollouts.status()

    def connection_totals(self) -> dict[str, int]:
        reports = self.reports()
        return {
            "connections_open": sum(r.connections for r in reports),
            "upstream_active": sum(r.upstream_active for r in reports),
            "upstream_idle": sum(r.upstream_idle for r in reports),
        }

    def mirror_totals(self) -> dict[str, int]:
        return add_counts([self.retired.mirror, *(r.mirror for r in self.reports())])

    def routing_totals(self) -> dict[str, int]:
        return add_counts([self.retired.routing, *(r.routing for r in self.reports())])


async def _main(config: Config, path: str) -> int:
    supervisor = Supervisor(config, path, asyncio.get_running_loop())
    supervisor.catch_signals()
    supervisor.resolve_addresses()
    if config.admin is not None:
        from proxy.admin.server import AdminServer

        supervisor.admin = AdminServer(config.admin, supervisor)
        await supervisor.admin.start()
    supervisor.make_shared_dir()
    try:
        try:
            await supervisor.start_workers()
        except StartupError:
            await supervisor.stop(signal.SIGTERM)
            raise
        return await supervisor.serve()
    finally:
        # After the workers have stopped (serve and stop wait for them).
        supervisor.remove_shared_dir()


def run_supervisor(config: Config, path: str) -> int:
    from proxy.runtime.server import run_main

    return run_main(_main(config, path))
