"""One graylane server process: listeners, the timeout sweep, signals, reload and drain.

Signals only enqueue; one task dispatches them, so a reload and a drain never run
interleaved. Drain order: stop accepting -> close idle keep-alive connections ->
let in-flight exchanges finish (each closes after its response) -> close what is
left at the deadline -> exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from time import perf_counter
from typing import Any

import uvloop

from proxy.admin.status import status_document
from proxy.config.schema import Config
from proxy.errors import ConfigError, GraylaneError, StartupError
from proxy.health.monitor import HealthMonitor
from proxy.http.context import ServerContext
from proxy.observe.accesslog import AccessLog
from proxy.observe.metrics import render_metrics
from proxy.observe.tracing import make_exporter
from proxy.observe.window import Window
from proxy.policy import PolicyRuntime
from proxy.policy.metrics import policy_families
from proxy.rollout.controller import RolloutController, UnknownRollout
from proxy.rollout.metrics import health_counts, health_families, rollout_families
from proxy.rollout.overrides import apply_weights, saved_weights
from proxy.runtime.fdcap import process_cap
from proxy.runtime.listener import Acceptor, open_socket

log = logging.getLogger("graylane")

MIN_TICK = 0.05
MAX_TICK = 1.0


def build_table(config: Config) -> Any:
    from proxy.routing.table import RouteTable

    return RouteTable(config)


def worker_count(config: Config) -> int:
    if config.workers == "auto":
        return os.cpu_count() or 1
    return int(config.workers)


def immediate_writes(config: Config) -> bool:
    """Whether the data plane writes as it goes rather than at the end of each loop iteration.

    ``writes: auto`` batches with one worker and writes at once with several: batching costs
    the least CPU per request on a CPU of its own, writing at once gives the best rate when
    processes share the CPUs (measured in docs/performance.md).
    """
    if config.writes == "auto":
        return worker_count(config) > 1
    return config.writes == "immediate"


def refused_reload(exc: GraylaneError) -> list[str]:
    """Log why a reload was refused; the problems, for the admin API."""
    problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    log.error("reload failed, keeping the running config:\n  %s", "\n  ".join(problems))
    return problems


def sweep_interval(config: Config) -> float:
    """A quarter of the shortest timeout, so a deadline is late by at most that much."""
    timeouts = [config.limits.request_head_timeout, config.limits.keepalive_timeout]
    pools = [config.upstream] + [s.pool for s in config.services.values() if s.pool is not None]
    for pool in pools:
        # Every pool deadline the sweep fires; a request_timeout of 0 is off.
        timeouts += (pool.response_head_timeout, pool.idle_timeout)
        if pool.request_timeout > 0:
            timeouts.append(pool.request_timeout)
    return max(MIN_TICK, min(MAX_TICK, min(timeouts) / 4))


class Server:
    def __init__(
        self, config: Config, path: str, loop: asyncio.AbstractEventLoop, worker: int | None = None
    ) -> None:
        self.worker = worker  # the worker index under a supervisor, None when alone
        self.config = config
        self.path = path
        self.loop = loop
        self.ctx = ServerContext(build_table(config), config.limits, loop)
        self.ctx.immediate = immediate_writes(config)
        self.ctx.set_protocol(config.protocol)
        self.ctx.max_clients = process_cap(config.limits.max_connections)
        self.policy_runtime = PolicyRuntime()
        self.ctx.policies = self.policy_runtime.compile(config)
        self.policy_runtime.activate(self.ctx.policies)
        self.ctx.on_connection_closed = self._connection_closed
        self.acceptors: list[Acceptor] = []
        self.signals: asyncio.Queue[int] = asyncio.Queue()
        self.drained = asyncio.Event()
        self.admin: Any = None
        self.window = Window(self.ctx.counters)
        self.health = HealthMonitor()
        self.ctx.health = self.health
        # Rollouts are decided by one process: this one when alone, the supervisor otherwise
        # (a worker takes the weights the supervisor saved).
        self.rollouts: RolloutController | None = None
        if worker is None:
            on_weights = self._rollout_weights
            self.rollouts = RolloutController(config, self.ctx.counters, on_weights, clock=loop.time)
            weights = self.rollouts.weights()
        else:
            weights = saved_weights(config)
        self._install_table(build_table(apply_weights(config, weights)) if weights else self.ctx.table)
        self._install_observers(*self._open_observers(config))

    def _install_table(self, table: Any) -> None:
        """Make ``table`` the one new requests use (endpoint health applied first)."""
        if table is not self.ctx.table:
            table.stats.carry_over(self.ctx.table.stats)
        self.health.attach(table)
        self.ctx.set_table(table)
        self._sync_pools(table)

    def _rollout_weights(self, weights: dict[str, dict[str, int]]) -> None:
        """The rollout controller moved a canary: recompile the routes with the new split."""
        self._install_table(build_table(apply_weights(self.config, weights)))
        log.info("rollout weights now %s", weights)

    def apply_saved_weights(self) -> None:
        """SIGUSR2 from the supervisor (a worker): take the rollout weights it saved."""
        self._install_table(build_table(apply_weights(self.config, saved_weights(self.config))))

    # --- access log and tracing ---------------------------------------------

    def _open_observers(self, config: Config) -> tuple[Any, Any]:
        """A new access log and span exporter for ``config`` (StartupError if they cannot be opened)."""
        access_log = AccessLog(config.access_log, self.loop) if config.access_log.enabled else None
        try:
            exporter = make_exporter(config.tracing, self.loop)
        except GraylaneError:
            if access_log is not None:
                access_log.close()
            raise
        return access_log, exporter

    def _install_observers(self, access_log: Any, exporter: Any) -> None:
        self._close_observers()
        ctx = self.ctx
        ctx.access_log = access_log
        ctx.exporter = exporter
        ctx.tracing = self.config.tracing.enabled

    def _close_observers(self) -> None:
        ctx = self.ctx
        if ctx.access_log is not None:
            ctx.access_log.close()
        if ctx.exporter is not None:
            ctx.exporter.close()
        ctx.access_log = ctx.exporter = None

    def reopen_logs(self) -> None:
        """SIGUSR1 (logrotate): reopen the access log file by name."""
        if self.ctx.access_log is not None:
            self.ctx.access_log.reopen()

    # --- start -------------------------------------------------------------

    def listen(self, addresses: list[str] | None = None, reuse_port: bool = False) -> None:
        """Open every listener (at ``addresses`` when the supervisor resolved them)."""
        for i, listener in enumerate(self.config.listeners):
            sock = open_socket(addresses[i] if addresses else listener.address, reuse_port)
            try:
                acceptor = Acceptor(self.ctx, listener, sock)
            except StartupError:
                sock.close()
                raise
            self.acceptors.append(acceptor)
        for acceptor in self.acceptors:
            acceptor.start()
            tls = " (TLS)" if acceptor.ssl else ""
            if self.worker is None:
                log.info("listening on %s%s", acceptor.bound, tls)
            else:
                # The supervisor announces the listeners once every worker is up.
                log.debug("worker %d accepting on %s%s", self.worker, acceptor.bound, tls)

    async def start_admin(self) -> None:
        if self.config.admin is not None:
            from proxy.admin.server import AdminServer

            self.admin = AdminServer(self.config.admin, self)
            await self.admin.start()

    def catch_signals(self) -> None:
        """Queue SIGTERM/SIGINT/SIGHUP for ``serve``; called before listening, because whoever
        waits for the ``listening on`` line may signal at once."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self.loop.add_signal_handler(signum, self.signals.put_nowait, signum)
        self.loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        if self.worker is not None:
            self.loop.add_signal_handler(signal.SIGUSR2, self.apply_saved_weights)

    async def serve(self) -> int:
        # A first snapshot now, so /status counts requests answered before the first tick.
        self.window.tick(self.loop.time())
        sweeper = self.loop.create_task(self._sweep_forever(sweep_interval(self.config)))
        self.health.start()
        if self.rollouts is not None:
            self.rollouts.start()
        try:
            while True:
                signum = await self.signals.get()
                if signum == signal.SIGHUP:
                    self.reload()
                elif signum == signal.SIGTERM:
                    await self.drain()
                    return 0
                else:
                    log.info("SIGINT: exiting now")
                    self.stop_now()
                    return 0
        finally:
            sweeper.cancel()
            if self.rollouts is not None:
                await self.rollouts.stop()
            self.health.close()

    # --- the periodic sweep -------------------------------------------------

    async def _sweep_forever(self, tick: float) -> None:
        ctx = self.ctx
        next_window = 0.0
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            if now >= next_window:
                # One counter snapshot a second feeds /status (and rollout analysis).
                self.window.tick(now)
                next_window = now + 1.0
            now = perf_counter()  # the data plane's clock for deadlines and idle times
            expired = [conn for conn in ctx.connections if conn.deadline <= now]
            for conn in expired:
                conn.on_timer(now)
            ctx.pools.sweep(now)
            if not ctx.draining:
                # An accept paused at the cap (every connection busy) looks again: connections
                # may have gone idle since, and idle ones make room (Acceptor._make_room).
                for acceptor in self.acceptors:
                    acceptor.start()

    def _connection_closed(self) -> None:
        if self.ctx.draining:
            if not self.ctx.connections:
                self.drained.set()
            return
        ctx = self.ctx
        open_count = len(ctx.connections)
        for acceptor in self.acceptors:
            if not acceptor.reading and open_count < ctx.max_clients:
                acceptor.start()

    # --- reload ------------------------------------------------------------

    def reload(self) -> list[str]:
        """Re-read the config file; swap it in whole or keep the running one. Returns the problems."""
        from proxy.config.load import load_config

        stats = self.ctx.stats
        try:
            config = load_config(self.path)
            table = build_table(config)
            policies = self.policy_runtime.compile(config)
            observers = None
            if (config.access_log, config.tracing) != (self.config.access_log, self.config.tracing):
                observers = self._open_observers(config)
        except GraylaneError as exc:
            stats.reloads_failed += 1
            return refused_reload(exc)
        if config.listeners != self.config.listeners:
            log.warning("listener changes take effect only after a restart")
        weights = self.rollouts.reload(config) if self.rollouts is not None else saved_weights(config)
        if weights:
            table = build_table(apply_weights(config, weights))
        self.config = config
        self.ctx.limits = config.limits
        self.ctx.immediate = immediate_writes(config)
        self.ctx.set_protocol(config.protocol)
        self.ctx.max_clients = process_cap(config.limits.max_connections)
        self._install_table(table)
        self.ctx.policies = policies
        self.policy_runtime.activate(policies)
        if observers is not None:
            self._install_observers(*observers)
        stats.reloads_ok += 1
        log.info("configuration reloaded from %s", self.path)
        return []

    def _sync_pools(self, table: Any) -> None:
        settings = {endpoint.key: endpoint.pool for endpoint in table.endpoints}
        self.ctx.pools.keep_only(set(settings), settings)

    # --- what the admin API shows --------------------------------------------

    def ready_state(self) -> str:
        if self.ctx.draining:
            return "draining"
        return "ready" if self.acceptors else "starting"

    def stats_document(self) -> dict[str, Any]:
        ctx = self.ctx
        document = ctx.stats.snapshot()
        document["connections_open"] = len(ctx.connections)
        document["upstream_idle"] = ctx.pools.idle_count()
        document["mirror"] = {name: getattr(ctx.mirror.stats, name) for name in ctx.mirror.stats.__slots__}
        document["routing"] = ctx.table.stats.as_dict()
        return document

    def metrics_text(self) -> bytes:
        ctx = self.ctx
        extra = {"client_connections": len(ctx.connections), "mirror_dropped": ctx.mirror.stats.dropped}
        families = health_families(health_counts(self.health))
        families += policy_families(self.policy_runtime.snapshot())
        if self.rollouts is not None:
            families += rollout_families(self.rollouts)
        return render_metrics(ctx.counters, ctx.stats, ctx.pools, extra, families)

    def status_document(self, seconds: float) -> dict[str, Any]:
        ctx = self.ctx
        per_version = self.window.per_version(seconds)
        document = status_document(ctx.table.config, ctx.table, per_version, ctx.pools, seconds, self.health)
        document["draining"] = ctx.draining
        if self.rollouts is not None:
            document["rollouts"] = self.rollouts.status()["rollouts"]
        return document

    def rollout_command(self, route: str, action: str) -> dict[str, Any]:
        if self.rollouts is None:
            raise UnknownRollout("rollouts are run by the supervisor")
        return self.rollouts.command(route, action)

    def rollouts_document(self) -> dict[str, Any]:
        return self.rollouts.status() if self.rollouts is not None else {"rollouts": {}}

    # --- stop --------------------------------------------------------------

    async def drain(self) -> None:
        ctx = self.ctx
        deadline = self.loop.time() + ctx.limits.drain_timeout
        ctx.draining = True
        for acceptor in self.acceptors:
            acceptor.close()
        # Logged once the listeners are closed: whoever reads it may rely on that.
        count = len(ctx.connections)
        log.info("SIGTERM: draining %d connection(s), deadline %gs", count, ctx.limits.drain_timeout)
        for conn in list(ctx.connections):
            conn.close_if_idle()
        ctx.pools.close_idle()
        # In-flight exchanges close their connection after their response.
        if ctx.connections:
            try:
                await asyncio.wait_for(self.drained.wait(), max(0.0, deadline - self.loop.time()))
            except TimeoutError:
                pass
        if ctx.connections:
            log.warning("drain deadline passed: closing %d connection(s)", len(ctx.connections))
        self.stop_now()
        log.info("drained, exiting")

    def stop_now(self) -> None:
        if self.admin is not None:
            self.admin.close()
        for acceptor in self.acceptors:
            acceptor.close()
        for conn in list(self.ctx.connections):
            conn.transport.abort()
        self.ctx.pools.close_idle()
        self.ctx.mirror.close()
        self._close_observers()


async def _main(config: Config, path: str) -> int:
    server = Server(config, path, asyncio.get_running_loop())
    server.catch_signals()
    await server.start_admin()
    server.listen()
    try:
        return await server.serve()
    finally:
        await server.policy_runtime.close()


def run(config: Config, path: str) -> int:
    """Run graylane in the foreground until SIGTERM/SIGINT; returns the exit code.

    With ``workers`` above 1, this process becomes the supervisor of that many workers.
    """
    from proxy.runtime.supervisor import run_supervisor

    if worker_count(config) > 1:
        return run_supervisor(config, path)
    return run_main(_main(config, path))


def run_main(main: Any) -> int:
    """Run ``main`` (a coroutine) on uvloop; startup and config errors become a message and an exit code."""
    try:
        return uvloop.run(main)
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 2
