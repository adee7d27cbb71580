"""wrk: the command line of one run, its Lua scripts, and the parsing of its ``--latency`` output."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

POST_BODY_BYTES = 4096
CANARY_USERS = 1000

# A 4 KiB POST body, the same bytes on every request.
POST_LUA = f"""\
wrk.method = "POST"
wrk.body = string.rep("x", {POST_BODY_BYTES})
wrk.headers["Content-Type"] = "application/octet-stream"
"""

# X-User-ID cycling through {CANARY_USERS} users; the requests are formatted once in init so that
# wrk (which shares CPU0 with the backend) spends no Lua time per request.
CANARY_LUA = f"""\
local requests = {{}}
local n = 0
function init(args)
    for i = 1, {CANARY_USERS} do
        local headers = {{}}
        for k, v in pairs(wrk.headers) do headers[k] = v end
        headers["X-User-ID"] = "user_" .. i
        requests[i] = wrk.format(nil, nil, headers)
    end
end
function request()
    n = n % {CANARY_USERS} + 1
    return requests[n]
end
"""

SCRIPTS = {"post": POST_LUA, "canary": CANARY_LUA}


def write_scripts(directory: Path) -> dict[str, Path]:
    """The Lua scripts as files in ``directory``: name -> path."""
    paths = {}
    for name, text in SCRIPTS.items():
        path = directory / f"{name}.lua"
        path.write_text(text)
        paths[name] = path
    return paths


def command(
    url: str,
    *,
    duration: int,
    threads: int = 1,
    connections: int = 64,
    script: Path | None = None,
    headers: Sequence[str] = (),
    timeout: float = 5.0,
) -> list[str]:
    """wrk's argv for one run with latency percentiles (wrk takes whole seconds)."""
    if duration < 1 or int(duration) != duration:
        raise ValueError(f"wrk runs for whole seconds, not {duration!r}")
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{int(duration)}s",
        f"--timeout={timeout:g}s",
        "--latency",
    ]
    for header in headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    return argv


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int = 0  # connect + read + write + timeout
    non_2xx: int = 0

    @property
    def clean(self) -> bool:
        return self.socket_errors == 0 and self.non_2xx == 0


class WrkOutputError(ValueError):
    """wrk's output lacks a line the result needs."""


_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_output(text: str) -> WrkResult:
    """Parse what ``wrk --latency`` prints (times in us/ms/s as wrk formats them)."""
    total = _TOTAL.search(text)
    rps = _RPS.search(text)
    percentiles = {p: float(v) * _TIME_UNITS[u] for p, v, u in _PERCENTILE.findall(text)}
    missing = [
        what
        for what, found in (
            ("requests", total),
            ("Requests/sec", rps),
            ("50%", "50" in percentiles),
            ("99%", "99" in percentiles),
        )
        if not found
    ]
    if missing or total is None or rps is None:
        raise WrkOutputError(f"wrk output without {', '.join(missing)}:\n{text}")
    socket = _SOCKET.search(text)
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _TIME_UNITS[total.group(3)] / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )
