"""Rollout webhooks: a JSON POST per event, retried with back-off, never in the way of traffic.

Theory of operation
-------------------
``post_json`` is a deliberately small HTTP/1.1 client (one request per connection,
``Connection: close``): it sends the body and reads the status line and the head of
the answer; the body is not needed. It runs only on the controller's loop, never on
a request's path.

``call`` makes one webhook call with retries: a connection or protocol failure, a
timeout, or (for informing events) a 5xx or 429 answer is tried again after
``backoff``, doubling each time, at most ``retries`` more times. For a ``step`` webhook
any answer is final: 2xx lets the step begin, anything else holds it (the controller
asks again later).

``Webhooks`` keeps the informing calls running in the background (``notify``), asks
the gate of a step (``gate``: every ``step`` webhook at once, all must say 2xx), counts
the outcomes, and cancels what is left on ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec

from proxy.config.schema import Webhook

log = logging.getLogger("graylane")

MAX_HEAD = 16 * 1024
MAX_BACKOFF = 60.0
USER_AGENT = "graylane-rollout"

Sleep = Callable[[float], Awaitable[None]]


class WebhookError(Exception):
    """The endpoint did not answer with a readable HTTP response."""


class CallResult(NamedTuple):
    ok: bool  # a 2xx answer
    status: int | None  # the last answer's status; None when none came
    detail: str  # what happened, for logs and /status
    attempts: int


async def post_json(url: str, body: bytes, *, timeout: float, headers: dict[str, str] | None = None) -> int:
    """POST ``body`` (JSON) to ``url``; the answer's status. OSError, TimeoutError or WebhookError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {authority}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    async with asyncio.timeout(timeout):
        context = ssl.create_default_context() if secure else None
        reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=MAX_HEAD)
        try:
            writer.write(head + body)
            await writer.drain()
            try:
                answer = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                raise WebhookError("no complete response head") from exc
        finally:
            writer.close()
    return _status_of(answer)


def _status_of(head: bytes) -> int:
    version, _, rest = head.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise WebhookError(f"not an HTTP/1.x response: {head[:40]!r}")
    return int(code)


async def call(hook: Webhook, body: bytes, *, gate: bool, sleep: Sleep = asyncio.sleep) -> CallResult:
    """One webhook call with retries; see the module docstring for what is retried."""
    pause = float(hook.backoff)
    detail = ""
    status: int | None = None
    for attempt in range(1, hook.retries + 2):
        try:
            status = await post_json(hook.url, body, timeout=hook.timeout, headers=hook.headers)
        except (OSError, TimeoutError, WebhookError) as exc:
            status = None
            detail = f"webhook {hook.name!r}: {_failure(exc)}"
        else:
            detail = f"webhook {hook.name!r} answered {status}"
            if 200 <= status <= 299:
                return CallResult(True, status, detail, attempt)
            if gate or not (status >= 500 or status == 429):
                return CallResult(False, status, detail, attempt)
        if attempt <= hook.retries:
            await sleep(pause)
            pause = min(pause * 2, MAX_BACKOFF)
    return CallResult(False, status, detail, hook.retries + 1)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


class Webhooks:
    """Background webhook calls of one controller, and their counts."""

    def __init__(self, sleep: Sleep = asyncio.sleep) -> None:
        self._sleep = sleep
        self._tasks: set[asyncio.Task[Any]] = set()
        # (webhook name, event, "ok" | "failed") -> calls
        self.counts: dict[tuple[str, str, str], int] = {}

    def notify(self, hooks: Sequence[Webhook], event: str, payload: dict[str, Any]) -> None:
        """Inform every hook of ``event`` in the background (the caller never waits)."""
        if not hooks:
            return
        body = msgspec.json.encode(payload)
        for hook in hooks:
            self._spawn(self._inform(hook, event, body))

    async def _inform(self, hook: Webhook, event: str, body: bytes) -> CallResult:
        result = await call(hook, body, gate=False, sleep=self._sleep)
        self._count(hook, event, result)
        if not result.ok:
            log.warning(
                "rollout %s webhook failed after %d attempt(s): %s", event, result.attempts, result.detail
            )
        return result

    def gate(self, hooks: Sequence[Webhook], payload: dict[str, Any]) -> asyncio.Task[CallResult]:
        """Ask every ``step`` hook at once; the task's result is ok only if all answered 2xx."""
        return self._spawn(self._ask(hooks, msgspec.json.encode(payload)))

    async def _ask(self, hooks: Sequence[Webhook], body: bytes) -> CallResult:
        results = await asyncio.gather(*(call(hook, body, gate=True, sleep=self._sleep) for hook in hooks))
        for hook, result in zip(hooks, results, strict=True):
            self._count(hook, "step", result)
        refused = [result for result in results if not result.ok]
        if not refused:
            return CallResult(True, 200, "every step webhook answered 2xx", max(r.attempts for r in results))
        first = refused[0]
        return CallResult(False, first.status, first.detail, first.attempts)

    def _count(self, hook: Webhook, event: str, result: CallResult) -> None:
        key = (hook.name, event, "ok" if result.ok else "failed")
        self.counts[key] = self.counts.get(key, 0) + 1

    def _spawn(self, coro: Awaitable[CallResult]) -> asyncio.Task[CallResult]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait for the calls in flight (tests; a graceful stop may prefer ``close``)."""
        for _ in range(100):  # a finished call starts no other: one round is the common case
            if not self._tasks:
                return
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
