"""A worker process of a multi-worker graylane (started by the supervisor).

The worker is an ordinary ``Server`` with three differences: it listens with
SO_REUSEPORT on the addresses the supervisor resolved (so ``:0`` means the same
port in every worker), it runs no admin API, and once a second it reports its
cumulative counters to the supervisor over the socket pair it inherited. Signals
come from the supervisor: SIGHUP reloads, SIGTERM drains, SIGUSR1 reopens logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from typing import Any

from proxy.config.schema import Config
from proxy.errors import ConfigError
from proxy.rollout.metrics import health_counts
from proxy.runtime.ipc import EndpointState, WorkerReport, encode
from proxy.runtime.server import Server, run_main

log = logging.getLogger("graylane")

ENV_INDEX = "GRAYLANE_WORKER_INDEX"
ENV_FD = "GRAYLANE_WORKER_FD"
ENV_LISTEN = "GRAYLANE_WORKER_LISTEN"
REPORT_INTERVAL = 1.0


def report(server: Server, index: int) -> WorkerReport:
    ctx = server.ctx
    pools = ctx.pools.pools.values()
    return WorkerReport(
        worker=index,
        pid=os.getpid(),
        counters=ctx.counters.snapshot(),
        stats=ctx.stats.snapshot(),
        connections=len(ctx.connections),
        upstream_active=sum(pool.active for pool in pools),
        upstream_idle=sum(len(pool.idle) for pool in pools),
        mirror={name: getattr(ctx.mirror.stats, name) for name in ctx.mirror.stats.__slots__},
        routing=ctx.table.stats.as_dict(),
        policy=server.policy_runtime.snapshot(),
        health=health_counts(server.health),
        endpoints=endpoint_states(server),
    )


def endpoint_states(server: Server) -> list[EndpointState]:
    """The endpoints of the current table whose health marks or pool differ from the defaults:
    what this worker's /status would show for them (``status_document``)."""
    health = server.health.health
    pools = server.ctx.pools.pools
    states = []
    for key, endpoint in health.all_keys():
        pool = pools.get(endpoint.key)
        active, idle = (pool.active, len(pool.idle)) if pool is not None else (0, 0)
        detail = health.unhealthy.get(key)
        ejected = key in health.ejected
        if active or idle or ejected or detail is not None:
            states.append(EndpointState(*key, active, idle, detail is None, detail, ejected))
    return states


async def _report_forever(server: Server, index: int, sock: socket.socket) -> None:
    _, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        while True:
            writer.write(encode(report(server, index)))
            await writer.drain()
            await asyncio.sleep(REPORT_INTERVAL)
    except (ConnectionError, OSError) as exc:
        # The supervisor is gone: nobody will drain us, so stop serving.
        log.error("worker %d lost its supervisor (%s); exiting", index, exc)
        server.signals.put_nowait(15)


async def _main(config: Config, path: str) -> int:
    index = int(os.environ[ENV_INDEX])
    sock = socket.socket(fileno=int(os.environ[ENV_FD]))
    addresses = json.loads(os.environ[ENV_LISTEN])
    server = Server(config, path, asyncio.get_running_loop(), worker=index)
    server.catch_signals()
    server.listen(addresses, reuse_port=True)
    reporter = asyncio.get_running_loop().create_task(_report_forever(server, index, sock))
    try:
        code = await server.serve()
    finally:
        reporter.cancel()
    # A last report, so the supervisor counts what happened during the drain.
    try:
        sock.setblocking(True)
        sock.sendall(encode(report(server, index)))
    except OSError:
        pass
    return code


def run_worker(config: Config, path: str) -> int:
    return run_main(_main(config, path))


def worker_env(index: int, fd: int, addresses: list[str]) -> dict[str, Any]:
    return {ENV_INDEX: str(index), ENV_FD: str(fd), ENV_LISTEN: json.dumps(addresses)}


def main(argv: list[str]) -> int:
    """``python -m proxy.runtime.worker CONFIG``: started by the supervisor only."""
    from proxy.cli import setup_logging
    from proxy.config.load import load_config

    path = argv[0]
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    return run_worker(config, path)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
