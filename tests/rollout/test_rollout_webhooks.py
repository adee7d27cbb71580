"""Rollout webhooks against a real HTTP server on 127.0.0.1: gates hold steps, events are reported."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque

import pytest
from rollout_support import ROUTE, Clock, Traffic, WeightLog, rollout_config

from proxy.config.schema import Duration, Webhook
from proxy.rollout.controller import RolloutController
from proxy.rollout.webhooks import WebhookError, Webhooks, call, post_json

pytestmark = pytest.mark.integration


class HookServer:
    """An HTTP/1.1 server that answers each POST with the next scripted status (default 200)."""

    def __init__(self) -> None:
        self.answers: deque[int | str] = deque()  # a status, or "close" to hang up without answering
        self.default = 200
        self.received: list[dict] = []
        self.arrived = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> HookServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def bodies(self, event: str | None = None) -> list[dict]:
        return [r["body"] for r in self.received if event is None or r["body"].get("event") == event]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(
            {"request_line": request_line, "headers": headers, "body": json.loads(body) if body else None}
        )
        self.arrived.set()
        answer = self.answers.popleft() if self.answers else self.default
        if answer == "close":
            writer.close()
            return
        writer.write(b"HTTP/1.1 %d Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok" % answer)
        await writer.drain()
        writer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hook(url: str, **changes) -> Webhook:
    return Webhook(name=changes.pop("name", "check"), url=url, backoff=Duration(0.01), **changes)


class Pauses:
    """A fake ``sleep`` that records the back-off pauses instead of waiting them out."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seen.append(seconds)


# --- the client -------------------------------------------------------------------------------


def test_post_json_sends_a_json_post_and_returns_the_status():
    async def scenario():
        async with HookServer() as server:
            server.answers.append(403)
            status = await post_json(
                server.url + "/gate?x=1", b'{"a": 1}', timeout=2, headers={"Authorization": "Bearer t"}
            )
            return status, server.received[0]

    status, seen = asyncio.run(scenario())
    assert status == 403
    assert seen["request_line"] == "POST /gate?x=1 HTTP/1.1"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["authorization"] == "Bearer t"
    assert seen["headers"]["host"].startswith("127.0.0.1:")
    assert seen["body"] == {"a": 1}


def test_post_json_failures_raise():
    async def scenario():
        with pytest.raises(OSError):
            await post_json(f"http://127.0.0.1:{closed_port()}/", b"{}", timeout=2)
        async with HookServer() as server:
            server.answers.append("close")
            with pytest.raises(WebhookError):
                await post_json(server.url, b"{}", timeout=2)

    asyncio.run(scenario())


def test_informing_calls_retry_5xx_with_doubling_backoff():
    async def scenario():
        pauses = Pauses()
        async with HookServer() as server:
            server.answers.extend([503, 500])
            result = await call(hook(server.url, retries=3), b"{}", gate=False, sleep=pauses)
            return result, pauses.seen, len(server.received)

    result, pauses, requests = asyncio.run(scenario())
    assert (result.ok, result.status, result.attempts) == (True, 200, 3)
    assert pauses == [0.01, 0.02]
    assert requests == 3


def test_unreachable_webhooks_are_retried_then_given_up():
    pauses = Pauses()
    result = asyncio.run(
        call(hook(f"http://127.0.0.1:{closed_port()}/", retries=2), b"{}", gate=False, sleep=pauses)
    )
    assert (result.ok, result.status, result.attempts) == (False, None, 3)
    assert "webhook 'check'" in result.detail
    assert pauses.seen == [0.01, 0.02]


def test_a_gate_answer_is_final():
    async def scenario():
        pauses = Pauses()
        async with HookServer() as server:
            server.answers.append(403)
            result = await call(hook(server.url, retries=3), b"{}", gate=True, sleep=pauses)
            return result, pauses.seen

    result, pauses = asyncio.run(scenario())
    assert (result.ok, result.status, result.attempts, result.detail) == (
        False,
        403,
        1,
        "webhook 'check' answered 403",
    )
    assert pauses == []


def test_client_errors_are_not_retried_for_informing_calls():
    async def scenario():
        async with HookServer() as server:
            server.answers.append(404)
            return await call(hook(server.url, retries=3), b"{}", gate=False, sleep=Pauses())

    assert asyncio.run(scenario()).attempts == 1


# --- the controller's webhooks ----------------------------------------------------------------

STEPS = [{"set_weight": 5}, {"set_weight": 25}]
ANALYSIS = {"interval": "30s", "min_requests": 10, "failure_limit": 1}


def controller_for(tmp_path, url: str, events: list[str], *, analysis=ANALYSIS):
    webhooks = [{"name": "ci", "url": url + "/hook", "events": events, "retries": 1, "backoff": "10ms"}]
    config = rollout_config(tmp_path, steps=STEPS, analysis=analysis, webhooks=webhooks)
    clock = Clock()
    traffic = Traffic()
    weights = WeightLog()
    controller = RolloutController(config, traffic, weights, clock=clock)
    return controller, clock, traffic, weights


def test_a_step_webhook_holds_the_step_until_it_answers_2xx(tmp_path):
    async def scenario():
        async with HookServer() as server:
            controller, clock, _, weights = controller_for(tmp_path, server.url, ["step"])
            server.answers.extend([403])
            controller.tick(clock.now)  # asks the gate of step 1
            status = controller.status()["rollouts"][ROUTE]
            assert (status["weight"], status["held"]) == (0, "waiting for the step webhooks")
            await controller.webhooks.drain()
            controller.tick(clock.now)
            status = controller.status()["rollouts"][ROUTE]
            assert (status["phase"], status["weight"], status["step_begun"]) == ("progressing", 0, False)
            assert status["held"] == "step 1 held: webhook 'ci' answered 403"
            assert weights.calls == []  # nothing moved
            controller.tick(clock.advance(29.0))  # asked again one interval later, not sooner
            assert controller.webhooks.pending == 0
            controller.tick(clock.advance(1.0))
            await controller.webhooks.drain()
            controller.tick(clock.now)
            status = controller.status()["rollouts"][ROUTE]
            assert (status["weight"], status["step_begun"], status["held"]) == (5, True, None)
            return server.bodies()

    bodies = asyncio.run(scenario())
    assert len(bodies) == 2
    first = bodies[0]
    assert (first["event"], first["route"], first["canary"], first["stable"]) == ("step", ROUTE, "v2", "v1")
    assert (first["step"], first["steps"], first["weight"], first["next_weight"]) == (0, 2, 0, 5)
    assert first["step_description"] == "set_weight 5"


def test_an_unreachable_step_webhook_holds_but_never_blocks(tmp_path):
    async def scenario():
        controller, clock, _, weights = controller_for(
            tmp_path, f"http://127.0.0.1:{closed_port()}", ["step"]
        )
        controller.tick(clock.now)
        await controller.webhooks.drain()
        controller.tick(clock.now)
        status = controller.status()["rollouts"][ROUTE]
        return status, weights.calls, controller.webhooks.counts

    status, calls, counts = asyncio.run(scenario())
    assert status["weight"] == 0 and status["held"].startswith("step 1 held: webhook 'ci': ")
    assert calls == []
    assert counts == {("ci", "step", "failed"): 1}


def test_promote_overrides_a_holding_webhook(tmp_path):
    async def scenario():
        async with HookServer() as server:
            server.default = 403
            controller, clock, _, _ = controller_for(tmp_path, server.url, ["step"])
            controller.tick(clock.now)
            await controller.webhooks.drain()
            controller.tick(clock.now)
            assert controller.status()["rollouts"][ROUTE]["weight"] == 0
            return controller.command(ROUTE, "promote")

    status = asyncio.run(scenario())
    assert (status["weight"], status["step_begun"], status["held"]) == (5, True, None)


def test_rollback_and_promotion_are_reported(tmp_path):
    async def scenario():
        async with HookServer() as server:
            server.answers.extend([500])  # the first report fails once and is retried
            controller, clock, traffic, _ = controller_for(tmp_path, server.url, ["promoted", "aborted"])
            controller.tick(clock.now)
            traffic.split(5, 1000, error_ratio=0.5)
            controller.tick(clock.advance(30.0))
            assert controller.status()["rollouts"][ROUTE]["phase"] == "aborted"  # at once, not after the hook
            await controller.webhooks.drain()
            controller.command(ROUTE, "retry")
            controller.command(ROUTE, "promote_full")
            await controller.webhooks.drain()
            return server.received, controller.webhooks.counts

    received, counts = asyncio.run(scenario())
    events = [r["body"]["event"] for r in received]
    assert events == ["aborted", "aborted", "promoted"]
    aborted = received[1]["body"]
    assert aborted["phase"] == "aborted" and aborted["weight"] == 0
    assert aborted["reason"].startswith("1 failed checks (failure_limit 1); last: error rate 50%")
    assert aborted["last_check"]["outcome"] == "fail"
    assert received[2]["body"]["weight"] == 100
    assert counts == {("ci", "aborted", "ok"): 1, ("ci", "promoted", "ok"): 1}


def test_webhook_calls_do_not_delay_a_rollback(tmp_path):
    async def scenario():
        controller, clock, traffic, weights = controller_for(
            tmp_path, f"http://127.0.0.1:{closed_port()}", ["aborted"]
        )
        controller.tick(clock.now)
        traffic.split(5, 1000, error_ratio=0.5)
        controller.tick(clock.advance(30.0))
        # The weight is back at 0 while the report is still being tried.
        assert weights.calls[-1][ROUTE]["v2"] == 0
        assert controller.webhooks.pending == 1
        await controller.stop()
        return controller.webhooks.pending

    assert asyncio.run(scenario()) == 0


def test_top_level_and_route_webhooks_are_both_called(tmp_path):
    async def scenario():
        async with HookServer() as server:
            config = rollout_config(
                tmp_path,
                steps=STEPS,
                webhooks=[{"name": "global", "url": server.url + "/g", "events": ["promoted"]}],
            )
            import msgspec

            route = config.routes[0]
            own = Webhook(name="own", url=server.url + "/own", events=["promoted"])
            rollout = msgspec.structs.replace(route.rollout, webhooks=[own])
            config = msgspec.structs.replace(config, routes=[msgspec.structs.replace(route, rollout=rollout)])
            controller = RolloutController(config, Traffic(), WeightLog(), clock=Clock())
            controller.tick()
            await controller.webhooks.drain()
            return sorted(r["request_line"] for r in server.received), controller.status()

    lines, status = asyncio.run(scenario())
    assert status["rollouts"][ROUTE]["phase"] == "promoted"  # no analysis: the steps run through
    assert lines == ["POST /g HTTP/1.1", "POST /own HTTP/1.1"]


def test_webhooks_close_cancels_what_is_left():
    async def scenario():
        webhooks = Webhooks(sleep=lambda s: asyncio.sleep(3600))
        webhooks.notify([hook(f"http://127.0.0.1:{closed_port()}/", retries=5)], "aborted", {"x": 1})
        await asyncio.sleep(0)
        assert webhooks.pending == 1
        webhooks.close()
        await webhooks.drain()
        return webhooks.pending

    assert asyncio.run(scenario()) == 0
