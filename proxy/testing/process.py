"""Run graylane as a child process for end-to-end tests.

``GraylaneProcess`` writes the config to a temporary directory, starts
``python -m proxy run -c FILE`` and waits until the proxy has logged
``listening on HOST:PORT`` once per listener (port 0 in a config means any free
port, so the real port is read from that line). Two reader threads keep every
line of stderr and stdout; waiting for a log line waits on their condition
variable, never on a sleep.

The command is a parameter (``{config}`` in it is replaced by the config path), so
the machinery itself is tested against a tiny fake child.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from proxy.testing.client import request

__all__ = ["GraylaneProcess", "ProcessStartError", "count_listeners", "poll_until", "proxy_config"]

T = TypeVar("T")

# Where this checkout's ``proxy`` package lives, so that ``-m proxy`` imports it
# whatever the child's working directory is.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
_CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
_STREAMS = ("stderr", "stdout")


def poll_until(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Call ``predicate`` until it returns a true value, and return that value.

    For state that lives in another process or in files it writes (graylane's admin API, a
    worker's report, the access log): there is no event to wait on, so this polls, and fails
    the test after ``timeout`` seconds, naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(0.02)


class ProcessStartError(RuntimeError):
    """graylane exited, or did not listen in time; the message holds its output."""


def count_listeners(text: str, suffix: str = ".yaml") -> int:
    """How many listeners a config declares (1 when the text cannot be read)."""
    try:
        if suffix == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        else:
            import yaml  # also reads JSON

            doc = yaml.safe_load(text)
    except Exception:
        return 1
    listeners = doc.get("listeners") if isinstance(doc, dict) else None
    return len(listeners) if isinstance(listeners, list) and listeners else 1


def proxy_config(
    endpoints: str | Sequence[str],
    *,
    limits: Mapping[str, object] | None = None,
    upstream: Mapping[str, object] | None = None,
    admin: bool | Mapping[str, object] = False,
    tls: Mapping[str, str] | None = None,
    **top: object,
) -> str:
    """Config text for the common test shape: one listener on 127.0.0.1:0, one service
    ``api`` whose version ``v1`` has ``endpoints``, one route sending everything there.

    ``limits`` and ``upstream`` are the config's sections of the same names (durations
    as ``"300ms"``); ``admin=True`` adds the admin API on 127.0.0.1:0 (a mapping sets
    its fields, e.g. a token); ``tls`` is the listener's ``{cert, key}``; other keyword
    arguments become top-level sections. JSON is YAML, so the text is JSON.
    """
    if isinstance(endpoints, str):
        endpoints = [endpoints]
    listener: dict[str, object] = {"address": "127.0.0.1:0"}
    if tls is not None:
        listener["tls"] = dict(tls)
    doc: dict[str, object] = {
        "version": 1,
        "listeners": [listener],
        "services": {"api": {"versions": {"v1": {"endpoints": list(endpoints)}}}},
        "routes": [{"name": "all", "service": "api"}],
    }
    if limits:
        doc["limits"] = dict(limits)
    if upstream:
        doc["upstream"] = dict(upstream)
    if admin:
        doc["admin"] = {"address": "127.0.0.1:0", **(admin if isinstance(admin, Mapping) else {})}
    doc.update(top)
    return json.dumps(doc, indent=2) + "\n"


class GraylaneProcess:
    """A graylane child process.

    ``config`` is config text, or a path (a ``Path``, or a one-line string naming
    an existing .yaml/.yml/.json/.toml file). ``env`` entries are added to this
    process's environment (a None value removes a variable). ``listeners`` is how
    many ``listening on`` lines mean ready (default: counted from the config).
    """

    LISTENING = re.compile(r"listening on (\[[0-9A-Za-z:.%]+\]|[^\s:\[\]]+):(\d+)")
    ADMIN = re.compile(r"admin API on (\[[0-9A-Za-z:.%]+\]|[^\s:\[\]]+):(\d+)")

    def __init__(
        self,
        config: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        *,
        command: Sequence[str] | None = None,
        extra_args: Sequence[str] = (),
        listeners: int | None = None,
        start_timeout: float = 20.0,
        cwd: str | os.PathLike[str] | None = None,
        suffix: str = ".yaml",
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="graylane-test-"))
        if _is_path(config):
            self.config_path = Path(config)
            self._owns_config = False
            text = self.config_path.read_text()
            suffix = self.config_path.suffix
        else:
            text = str(config)
            self.config_path = self.workdir / f"graylane{suffix}"
            self.config_path.write_text(text)
            self._owns_config = True
        self.expected_listeners = listeners if listeners is not None else count_listeners(text, suffix)
        if command is None:
            command = [sys.executable, "-m", "proxy", "run", "-c", "{config}"]
        self.command = [arg.replace("{config}", str(self.config_path)) for arg in command]
        self.command.extend(extra_args)
        self.env = _child_env(env)
        self.cwd = Path(cwd) if cwd is not None else self.workdir
        self.start_timeout = start_timeout
        self._popen: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._lines: dict[str, list[str]] = {name: [] for name in _STREAMS}
        self._eof: dict[str, bool] = {name: False for name in _STREAMS}
        self._cleaned = False

    def __repr__(self) -> str:
        if self._popen is None:
            return f"<GraylaneProcess {self.config_path} not started>"
        with self._cond:
            ports = [port for _, port in self._addresses_locked()]
        state = "running" if self._popen.poll() is None else f"exited {self._popen.returncode}"
        return f"<GraylaneProcess pid={self._popen.pid} ports={ports} {state}>"

    # --- lifecycle ----------------------------------------------------------------

    def start(self, wait_ready: bool = True) -> GraylaneProcess:
        """Start the child; unless ``wait_ready`` is False, wait until it listens."""
        if self._popen is not None:
            raise RuntimeError("graylane process already started")
        self._popen = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        for name in _STREAMS:
            pipe = getattr(self._popen, name)
            reader = threading.Thread(
                target=self._read, args=(name, pipe), name=f"graylane-{name}", daemon=True
            )
            reader.start()
            self._readers.append(reader)
        if wait_ready:
            self._wait_ready(self.start_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:  # woken by every new line; bounded by the deadline
                if len(self._addresses_locked()) >= self.expected_listeners:
                    return
                remaining = deadline - time.monotonic()
                if self._eof["stderr"] or remaining <= 0:
                    break
                self._cond.wait(remaining)
        popen = self._require_started()
        if self._eof["stderr"]:
            # stderr closed: the child is exiting (or closed it, which we treat alike).
            try:
                code: int | None = popen.wait(timeout=max(deadline - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                code = None
            self.stop()
            raise ProcessStartError(f"graylane exited (code {code}) before listening\n{self._output()}")
        self.stop()
        raise ProcessStartError(
            f"graylane logged {len(self.addresses)} of {self.expected_listeners} "
            f"'listening on' lines within {timeout}s\n{self._output()}"
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code. Idempotent."""
        popen = self._popen
        code = None
        if popen is not None:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(timeout)
            code = popen.returncode
            for reader in self._readers:
                # A grandchild still holding the pipe would keep a reader blocked; it is a daemon.
                reader.join(timeout)
            for pipe in (popen.stdout, popen.stderr):
                if pipe is not None and not any(r.is_alive() for r in self._readers):
                    pipe.close()
        if not self._cleaned:
            self._cleaned = True
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the child to exit by itself; returns its exit code."""
        popen = self._require_started()
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"graylane still running after {timeout}s\n{self._output()}") from None
        for reader in self._readers:
            reader.join(timeout)
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the child (by its PID; nothing happens once it has exited)."""
        self._require_started().send_signal(sig)

    def __enter__(self) -> GraylaneProcess:
        if self._popen is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- state ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._require_started().pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every distinct ``(host, port)`` logged as ``listening on``, in order."""
        with self._cond:
            return self._addresses_locked()

    @property
    def address(self) -> tuple[str, int]:
        addresses = self.addresses
        if not addresses:
            raise RuntimeError(f"graylane has not logged a listening address\n{self._output()}")
        return addresses[0]

    @property
    def ports(self) -> list[int]:
        return [port for _, port in self.addresses]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def admin_address(self) -> tuple[str, int]:
        """``(host, port)`` of the admin API, from its ``admin API on`` log line."""
        with self._cond:
            for line in self._lines["stderr"]:
                match = self.ADMIN.search(line)
                if match is not None:
                    return match.group(1).strip("[]"), int(match.group(2))
        raise RuntimeError(f"graylane has not logged an admin API address\n{self._output()}")

    @property
    def admin_port(self) -> int:
        return self.admin_address[1]

    def admin_json(self, path: str) -> Any:
        """GET ``path`` on the admin API (a new connection) and decode its JSON body."""
        return request(*self.admin_address, "GET", path, timeout=10).json()

    @property
    def host(self) -> str:
        return self.address[0]

    def write_config(self, text: str) -> None:
        """Replace the config file atomically (then e.g. ``send_signal(SIGHUP)``)."""
        if not self._owns_config:
            raise RuntimeError(f"{self.config_path} was given by path; it is not rewritten")
        staging = self.config_path.with_suffix(".new")
        staging.write_text(text)
        os.replace(staging, self.config_path)

    # --- logs -----------------------------------------------------------------------

    def logs(self, stream: str = "stderr") -> list[str]:
        """Every line the child wrote to ``stream`` ("stderr" or "stdout") so far."""
        with self._cond:
            return list(self._lines[stream])

    def log_mark(self, stream: str = "stderr") -> int:
        """The number of lines so far: pass it as ``since`` to wait for newer lines."""
        with self._cond:
            return len(self._lines[stream])

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, since: int = 0, stream: str = "stderr"
    ) -> re.Match[str]:
        """The first match of ``pattern`` (``re.search``) in lines from index ``since`` on.
        Raises TimeoutError if none comes within ``timeout`` or the stream ends."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:  # every pass scans new lines, or waits: bounded by the deadline
                lines = self._lines[stream]
                while index < len(lines):
                    match = regex.search(lines[index])
                    if match is not None:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if self._eof[stream] or remaining <= 0:
                    break
                self._cond.wait(remaining)
            ended = self._eof[stream]
        why = f"{stream} ended" if ended else f"not within {timeout}s"
        raise TimeoutError(f"no {stream} line matching {regex.pattern!r} ({why})\n{self._output()}")

    # --- internals ------------------------------------------------------------------

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise RuntimeError("graylane process not started")
        return self._popen

    def _read(self, name: str, pipe: IO[bytes]) -> None:
        try:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self._lines[name].append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            with self._cond:
                self._eof[name] = True
                self._cond.notify_all()

    def _addresses_locked(self) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for line in self._lines["stderr"]:
            match = self.LISTENING.search(line)
            if match is not None:
                address = (match.group(1).strip("[]"), int(match.group(2)))
                if address not in found:
                    found.append(address)
        return found

    def _output(self) -> str:
        with self._cond:
            stderr = "\n".join(self._lines["stderr"])
            stdout = "\n".join(self._lines["stdout"])
        return f"--- command: {' '.join(self.command)}\n--- stderr:\n{stderr}\n--- stdout:\n{stdout}"


def _is_path(config: str | os.PathLike[str]) -> bool:
    if isinstance(config, os.PathLike):
        return True
    return "\n" not in config and config.endswith(_CONFIG_SUFFIXES) and os.path.isfile(config)


def _child_env(extra: Mapping[str, str | None] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _SOURCE_ROOT + (os.pathsep + path if path else "")
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
