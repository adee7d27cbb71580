"""The JSON access log: one line per request, written in batches.

Theory of operation
-------------------
The data plane calls ``log(entry)`` once per finished request with one tuple it builds
from what it already holds; ``log`` only appends it to a list. Formatting and writing
happen off the request path: a timer on the loop flushes every ``flush_interval``, and
``log`` flushes at once when ``max_batch`` entries are pending. A flush turns the whole
batch into JSON lines (``proxy._fast.logline``: compiled, it writes each line's bytes directly
into one buffer) and writes them with one ``write``.

Where the lines go:

- a file (``path``): opened with O_APPEND, so several worker processes can share it and
  each batch lands whole. A write of a batch to a regular file only copies it to the page
  cache: it blocks the loop for microseconds, which is why it is done inline.
- standard output (``path`` None or ``"-"``): written in the flush only. When it is a
  pipe or a socket (a container runtime, journald), a batch is written in pieces of at
  most PIPE_BUF bytes cut at line ends, so lines of several workers never interleave. A
  blocking pipe whose reader stalls stalls the loop (as with any logger); a non-blocking
  one keeps the rest for the next flush, up to ``MAX_BACKLOG`` bytes.

``reopen()`` (SIGUSR1, after logrotate renamed the file) writes what is pending into the
old file and opens the path again. ``close()`` flushes.

Entry fields, in order (see ``Entry``); bytes are decoded as ASCII with backslash escapes
(``b"/caf\\xc3\\xa9"`` -> ``"/caf\\\\xc3\\\\xa9"``), so no byte can break a line.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from typing import Any

from proxy._fast import load
from proxy.config import schema
from proxy.errors import ConfigError, StartupError

log = logging.getLogger("graylane")

_logline = load("logline")
# What a line holds (its fields, in order) and the time's end; defined by the formatter's twin.
Line = _logline.Line
MILLIS = _logline.MILLIS

# (time_unix: float, request_id: bytes, client: str, method: bytes, path: bytes, status: int,
#  bytes_in: int, bytes_out: int, duration: float (s), upstream_duration: float (s, -1 none),
#  route: str, version: str, endpoint: str, labels: dict | None, sticky_hash: int (-1 none),
#  flags: str ("-" or e.g. "UF")). time_unix is when the request head was received.
Entry = tuple

MAX_BACKLOG = 4 * 1024 * 1024  # bytes kept for a non-blocking stdout that is full
try:
    from select import PIPE_BUF  # writes to a pipe up to this size are atomic
except ImportError:  # pragma: no cover - not a POSIX system
    PIPE_BUF = 512

# Tests replace this to count writes.
_os_write = os.write


def _ignore(entry: Entry) -> None:
    pass


class AccessLog:
    """Batched JSON access log. ``loop`` may be None: then only ``max_batch`` and ``close`` flush."""

    def __init__(self, config: schema.AccessLog, loop: Any = None) -> None:
        if config.max_batch < 1:
            raise ConfigError("access_log.max_batch: must be >= 1")
        if config.flush_interval <= 0:
            raise ConfigError("access_log.flush_interval: must be > 0")
        self.enabled = config.enabled
        self.path = None if config.path in (None, "", "-") else config.path
        self.max_batch = config.max_batch
        self.flush_interval = float(config.flush_interval)
        self.lines_written = 0
        self.lines_dropped = 0  # lines lost to write errors or a full backlog
        self.write_errors = 0
        self._pending: list[Entry] = []
        self._formatter = _logline.LineFormatter()
        self._loop = loop
        self._timer: Any = None
        self._closed = False
        self._fd = -1
        self._stream: Any = None  # a stdout without a file descriptor (replaced by a test harness)
        self._stream_bytes = True
        self._chunk = 0  # > 0: write in pieces of at most this many bytes (a pipe or a socket)
        self._backlog = b""
        self._failing = False  # a write error was logged and no write has succeeded since
        if not self.enabled:
            self.log = _ignore  # type: ignore[method-assign]
            return
        try:
            self._open()
        except OSError as error:
            raise StartupError(f"access_log.path: cannot open {self.path}: {error.strerror}") from error
        if loop is not None:
            self._timer = loop.call_later(self.flush_interval, self._tick)

    # --- the request path -------------------------------------------------------

    def log(self, entry: Entry) -> None:
        """Queue one request's entry (the tuple described in ``Entry``)."""
        pending = self._pending
        pending.append(entry)
        if len(pending) >= self.max_batch:
            self.flush()

    # --- flushing ---------------------------------------------------------------

    def _tick(self) -> None:
        try:
            self.flush()
        except Exception:  # a bug here must not end the timer chain
            log.exception("access log flush failed")
        finally:
            if not self._closed:
                self._timer = self._loop.call_later(self.flush_interval, self._tick)

    def flush(self) -> None:
        """Format every pending entry and write them in one write."""
        pending = self._pending
        if not pending and not self._backlog:
            return
        self._pending = []
        self._write(self.format(pending) if pending else b"")

    def format(self, entries: list[Entry]) -> bytes:
        """JSON lines (each ending in a newline) for ``entries``; an entry that fails to format is skipped."""
        return self._formatter.format(entries, self._skipped)

    def _skipped(self, entry: Entry, error: Exception) -> None:
        # A malformed entry (a bug in its producer) costs its own line, not the batch.
        self.lines_dropped += 1
        log.warning("access log entry skipped: %r (%s)", entry, error)

    # --- writing ----------------------------------------------------------------

    def _open(self) -> None:
        if self.path is None:
            stdout = sys.stdout
            try:
                self._fd = stdout.fileno()
            except (AttributeError, OSError, ValueError):
                self._fd = -1
                self._stream = getattr(stdout, "buffer", stdout)
                self._stream_bytes = self._stream is not stdout
                return
            self._stream = None
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            mode = os.fstat(self._fd).st_mode
        except OSError:
            mode = 0
        self._chunk = PIPE_BUF if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else 0

    def _write(self, data: bytes) -> None:
        if self._backlog:
            data = self._backlog + data
            self._backlog = b""
        if not data:
            return
        stream = self._stream
        if stream is not None:
            try:
                stream.write(data if self._stream_bytes else data.decode())
                stream.flush()
            except (OSError, ValueError) as error:
                self._write_failed(error, data)
                return
            self._written(data.count(b"\n"))
            return
        fd = self._fd
        if fd < 0:
            self._write_failed(OSError("access log is not open"), data)
            return
        view = memoryview(data)
        total = len(data)
        chunk = self._chunk
        done = 0
        while done < total:
            end = total
            if chunk and total - done > chunk:
                # Cut at the last line end within the chunk; a longer line goes alone.
                end = data.rfind(b"\n", done, done + chunk) + 1
                if end <= done:
                    end = data.find(b"\n", done + chunk) + 1 or total
            try:
                done += _os_write(fd, view[done:end])
            except InterruptedError:
                continue
            except BlockingIOError:
                self.lines_written += data.count(b"\n", 0, done)
                rest = data[done:]
                if len(rest) <= MAX_BACKLOG:
                    self._backlog = rest
                else:
                    self.lines_dropped += rest.count(b"\n")
                return
            except OSError as error:
                self.lines_written += data.count(b"\n", 0, done)
                self._write_failed(error, data[done:])
                return
        self._written(data.count(b"\n"))

    def _written(self, count: int) -> None:
        self.lines_written += count
        if self._failing:
            self._failing = False
            log.warning("access log writes work again")

    def _write_failed(self, error: Exception, lost: bytes) -> None:
        self.write_errors += 1
        self.lines_dropped += lost.count(b"\n")
        if not self._failing:  # one message per run of failures, not one per batch
            self._failing = True
            log.error("access log write to %s failed: %s", self.path or "stdout", error)

    # --- operations -------------------------------------------------------------

    def reopen(self) -> None:
        """Reopen the file by name (SIGUSR1 after logrotate); pending lines go to the old file."""
        if not self.enabled or self._closed:
            return
        self.flush()
        if self.path is None:
            return
        old = self._fd
        try:
            self._open()
        except OSError as error:
            self._fd = old  # keep writing to the old file rather than nowhere
            log.error("access log: cannot reopen %s: %s", self.path, error)
            return
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        """Write what is pending and stop; later entries are ignored."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.enabled:
            return
        self.flush()
        self.log = _ignore  # type: ignore[method-assign]
        if self.path is not None and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
