"""How many client connections one process can hold: limits.max_connections bounded by its descriptors.

Every client connection takes a descriptor, and while a request is in flight usually a second
one upstream; the process also needs a few for its listeners, the admin port, log files,
Redis, health checks and the event loop itself. A cap derived from RLIMIT_NOFILE keeps
``accept`` from ever failing with EMFILE (after which nothing could be served until some
connection closed): at the cap graylane closes its longest idle connections to make room
(``ServerContext.evict_idle``), which an idle flood cannot outlast.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("graylane")

RESERVED = 64  # listeners, admin, logs, Redis, health checks, the loop's own descriptors
MIN_CAP = 16


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (as nginx's worker_rlimit_nofile); return the soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(max_connections: int, nofile: int) -> int:
    """Client connections at most: half of what is left after RESERVED (the other half upstream)."""
    derived = max(MIN_CAP, (nofile - RESERVED) // 2)
    return min(max_connections, derived)


def process_cap(max_connections: int) -> int:
    """``connection_cap`` for this process, after raising its descriptor limit; says when it binds."""
    nofile = raise_nofile_limit()
    cap = connection_cap(max_connections, nofile)
    if cap < max_connections:
        log.info("client connections capped at %d by RLIMIT_NOFILE %d (limits.max_connections %d)",
                 cap, nofile, max_connections)
    return cap
