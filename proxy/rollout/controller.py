"""The rollout controller: checks, steps, transitions and weights for every route with a rollout.

Theory of operation
-------------------
One ``RolloutController`` per graylane (the single process, or the supervisor). It
owns one ``RolloutState`` per route with a ``rollout`` section and drives it with
``tick(now)``, which the background task runs whenever something is due (a check,
the end of a timed pause, a webhook answer, a command) and at least once a second.

A tick, per rollout:

1. *time*: a timed pause that is running (progressing, step entered) is credited
   with the time since the last tick. Only time spent progressing counts, so a pause
   interrupted by a restart resumes with what was left of it.
2. *check*: when ``analysis.interval`` has passed, the counters of the route since the
   previous check are judged (``proxy.rollout.analysis``). No check is made while the
   canary's weight is 0 (there is nothing to judge). A failed check counts towards
   ``failure_limit`` (and reaching it aborts: the canary's weight goes to 0 in this
   tick); ``max_inconclusive`` inconclusive checks in a row pause the rollout for a
   human; a passing check lets the current step finish. Checks go on while a
   rollout is paused: its canary still serves, so it can still be rolled back (and
   a check that passed meanwhile counts once it is resumed).
3. *progress* (progressing only): a step that has not begun asks its ``step`` webhooks
   first (a non-2xx answer holds it; asked again one interval later), then begins: a
   ``set_weight`` step sets the canary's weight (and the next check window starts
   there, so every check sees one weight), a ``pause: {}`` step pauses the rollout
   until promoted. A step is done when, with analysis, a check has passed in it (and
   none failed since) and, for a timed pause, its time is served; then the next step
   begins, or after the last one the rollout is promoted (canary 100%).

Transitions go through ``proxy.rollout.state.fire`` (the one table); each is logged,
counted (``transitions``), told to ``listeners``, kept in the state's history and saved. Whenever the wanted
weights change, ``on_weights(weights)`` is called with the splits for every rollout
route (``proxy.rollout.overrides.Weights``); the caller compiles a route table from
``apply_weights(config, weights)``.

The state file is written off the event loop (an fsync can take milliseconds), one
write at a time, always the newest state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from proxy.config.schema import Config, Rollout, Route
from proxy.errors import HttpError, StartupError
from proxy.observe.counters import Snapshot
from proxy.rollout.analysis import Verdict, judge, version_stats
from proxy.rollout.overrides import Weights, canary_split
from proxy.rollout.spec import (
    describe,
    pause_seconds,
    rollout_routes,
    stable_version,
    step_kind,
    webhooks_for,
)
from proxy.rollout.state import (
    ACTIVE,
    Change,
    Event,
    InvalidTransition,
    RolloutState,
    encode_states,
    fire,
    load_states,
    new_state,
    state_path,
    write_atomically,
)
from proxy.rollout.webhooks import CallResult, Webhooks

log = logging.getLogger("graylane")

MAX_SLEEP = 1.0  # the loop runs at least this often
MIN_SLEEP = 0.001
SAVE_EVERY = 5.0  # seconds between saves of a running pause's progress
EPSILON = 1e-9

ACTIONS = ("status", "promote", "promote_full", "pause", "resume", "abort", "retry")


class SnapshotSource(Protocol):
    """Cumulative request counters: ``RequestCounters`` (one process) or the supervisor's sums."""

    def snapshot(self, at: float = 0.0) -> Snapshot: ...


WeightsCallback = Callable[[Weights], None]
TransitionListener = Callable[[str, Change], None]


class UnknownRollout(HttpError):
    status = 404


class RolloutConflict(HttpError):
    """The command does not apply in the rollout's phase (promote an aborted rollout...)."""

    status = 409


class BadAction(HttpError):
    status = 400


class _Live:
    """One route's rollout: its spec, its state, and what is not persisted."""

    def __init__(self, route: Route, config: Config, state: RolloutState, now: float) -> None:
        self.state = state
        self.generation = 0  # bumped on restart/retry: late webhook answers are then ignored
        self.baseline: Snapshot | None = None  # the counters at the previous check
        self.next_check = now
        self.last_seen = now  # when pause time was last credited
        self.saved_at = now
        self.gate: asyncio.Task[CallResult] | None = None
        self.gate_key: tuple[int, int] = (-1, -1)  # (generation, step) the gate task asks for
        self.gate_retry_at = 0.0
        self.held = ""  # why the next step waits (a webhook's answer)
        self.verdict: Verdict | None = None
        self.checked_at: float | None = None  # wall clock of the last check
        self.bind(route, config)

    def bind(self, route: Route, config: Config) -> None:
        assert route.rollout is not None
        self.route = route
        self.spec: Rollout = route.rollout
        self.service = config.services[route.service]
        self.stable = stable_version(self.service)
        self.step_hooks = webhooks_for(config, route, "step")
        self.promoted_hooks = webhooks_for(config, route, "promoted")
        self.aborted_hooks = webhooks_for(config, route, "aborted")

    @property
    def name(self) -> str:
        return self.route.name

    @property
    def steps(self) -> int:
        return len(self.spec.steps)

    def current_pause(self) -> float | None:
        """The length of the current step when it is a timed pause that is running."""
        state = self.state
        if state.phase != "progressing" or not state.entered or state.step >= self.steps:
            return None
        return pause_seconds(self.spec.steps[state.step])

    def weights(self) -> dict[str, int]:
        return canary_split(self.route, self.service, self.spec.canary, self.state.weight)


class RolloutController:
    """See the module docstring. Construct it before compiling the first route table."""

    def __init__(
        self,
        config: Config,
        source: SnapshotSource,
        on_weights: WeightsCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        webhooks: Webhooks | None = None,
    ) -> None:
        """Load the saved states (StartupError when the state directory cannot be used)."""
        self.config = config
        self.source = source
        self.on_weights = on_weights
        self.clock = clock
        self.wall = wall
        self.webhooks = webhooks if webhooks is not None else Webhooks()
        self.listeners: list[TransitionListener] = []
        # Counts for /status and metrics: (route, event, before, after) -> n, (route, outcome) -> n.
        self.transitions: dict[tuple[str, str, str, str], int] = {}
        self.checks: dict[tuple[str, str], int] = {}
        self.state_writes = 0
        self.state_write_errors = 0
        self._live: dict[str, _Live] = {}
        self._reported: Weights | None = None
        self._dirty = False
        self._writing: asyncio.Future[None] | None = None
        self._pending: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._state_dir = config.rollouts.state_dir
        saved: dict[str, RolloutState] = {}
        if rollout_routes(config):
            try:
                saved = load_states(self._state_dir)
            except OSError as exc:
                raise StartupError(f"cannot read the rollout state in {self._state_dir}: {exc}") from exc
        self._sync(config, saved, self.clock())
        self._reported = self.weights()
        if self._live:
            try:
                write_atomically(state_path(self._state_dir), encode_states(self.states()))
            except OSError as exc:
                raise StartupError(f"cannot write the rollout state in {self._state_dir}: {exc}") from exc

    # --- what the rest of graylane asks ---------------------------------------------------

    def weights(self) -> Weights:
        """The splits every rollout route wants now: {route: {version: weight}}."""
        return {name: live.weights() for name, live in self._live.items()}

    def states(self) -> dict[str, RolloutState]:
        return {name: live.state for name, live in self._live.items()}

    def status(self) -> dict[str, Any]:
        """Every rollout as JSON-ready data, for /status."""
        now = self.clock()
        return {
            "rollouts": {name: self._describe(live, now) for name, live in self._live.items()},
            "state_file": state_path(self._state_dir) if self._live else None,
            "state_writes": self.state_writes,
            "state_write_errors": self.state_write_errors,
        }

    def metrics(self) -> dict[str, Any]:
        """Counters for Prometheus: transitions, checks and webhook calls, by their labels."""
        return {
            "transitions": dict(self.transitions),  # (route, event, from, to) -> n
            "checks": dict(self.checks),  # (route, outcome) -> n
            "webhooks": dict(self.webhooks.counts),  # (webhook, event, ok|failed) -> n
            "state_write_errors": self.state_write_errors,
        }

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop on the running event loop (call once, from a coroutine)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="graylane-rollouts")

    async def stop(self) -> None:
        """Stop the loop, cancel webhook calls, save the pause time served so far."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        now = self.clock()
        for live in self._live.values():
            self._credit(live, now)
            if live.gate is not None:
                live.gate.cancel()
        self.webhooks.close()
        await self.flush()
        if self._live:
            self._dirty = False
            await self._write(encode_states(self.states()))

    def reload(self, config: Config) -> Weights:
        """A new config (SIGHUP): keep each rollout whose canary is unchanged, restart the others.

        Returns the new weights; the caller compiles its table from them (``on_weights`` is not
        called for a reload).
        """
        self.config = config
        if config.rollouts.state_dir != self._state_dir:
            log.warning("rollouts.state_dir changes take effect only after a restart")
        self._sync(config, self.states(), self.clock())
        self._reported = self.weights()
        self._dirty = True
        self._publish()
        self._poke()
        return self._reported

    async def flush(self) -> None:
        """Wait until the newest state is on disk (tests, shutdown)."""
        for _ in range(100):  # each round is one write; a new one only starts for a newer state
            writing = self._writing
            if writing is None:
                return
            await asyncio.shield(writing)

    # --- commands (admin API / CLI) --------------------------------------------------------

    def command(self, route: str, action: str) -> dict[str, Any]:
        """``status|promote|promote_full|pause|resume|abort|retry`` one route's rollout.

        Returns the rollout as ``status()`` shows it, plus ``action``. UnknownRollout (404),
        RolloutConflict (409: not possible in this phase) or BadAction (400).
        """
        if action not in ACTIONS:
            raise BadAction(f"unknown rollout action {action!r} (one of: {', '.join(ACTIONS)})")
        live = self._live.get(route)
        if live is None:
            known = ", ".join(self._live) or "none"
            raise UnknownRollout(f"no rollout on a route named {route!r} (rollouts: {known})")
        now = self.clock()
        if action != "status":
            self._credit(live, now)
            try:
                getattr(self, f"_do_{action}")(live, now)
            except InvalidTransition as exc:
                raise RolloutConflict(f"{route}: {exc}") from exc
            self._progress(live, now)
            self._publish()
            self._poke()
        return {"action": action, **self._describe(live, now)}

    def _do_promote(self, live: _Live, now: float) -> None:
        state = live.state
        if state.phase not in ACTIVE:
            raise InvalidTransition(state.phase, "promote")
        if not state.entered:
            # The step waits for its webhooks: the operator's word is enough.
            if state.phase == "paused":
                self._fire(live, "resume", "resumed to promote", now)
            self._cancel_gate(live)
            self._enter(live, now, "promoted by an operator")
        elif state.step + 1 >= live.steps:
            self._complete(live, now, "promoted by an operator")
        else:
            self._fire(live, "advance", f"step {state.step + 1} promoted by an operator", now)

    def _do_promote_full(self, live: _Live, now: float) -> None:
        self._cancel_gate(live)
        self._complete(live, now, "fully promoted by an operator")

    def _do_pause(self, live: _Live, now: float) -> None:
        self._fire(live, "pause", "paused by an operator", now)

    def _do_resume(self, live: _Live, now: float) -> None:
        state = live.state
        if state.phase == "paused" and state.entered and self._kind(live) == "until_promoted":
            self._do_promote(live, now)  # nothing else ends a "pause: {}" step
        else:
            self._fire(live, "resume", "resumed by an operator", now)

    def _do_abort(self, live: _Live, now: float) -> None:
        self._abort(live, "abort", "aborted by an operator", now)

    def _do_retry(self, live: _Live, now: float) -> None:
        self._fire(live, "retry", "retried by an operator", now)
        self._restarted(live, now)

    # --- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self.clock()
            try:
                self.tick(now)
            except Exception:  # a bug in one tick must not end rollbacks for good
                log.exception("rollout controller: tick failed")
            delay = min(MAX_SLEEP, max(MIN_SLEEP, self._next_due(now) - now))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _next_due(self, now: float) -> float:
        due = now + MAX_SLEEP
        for live in self._live.values():
            state = live.state
            if state.phase not in ACTIVE:
                continue
            if live.spec.analysis is not None:
                due = min(due, live.next_check)
            pause = live.current_pause()
            if pause is not None:
                due = min(due, now + max(0.0, pause - state.pause_served))
            if not state.entered and live.gate is None and live.step_hooks:
                due = min(due, live.gate_retry_at)
        return due

    def tick(self, now: float | None = None) -> None:
        """One pass over every rollout (the loop calls it; tests may call it with their own clock)."""
        if now is None:
            now = self.clock()
        for live in self._live.values():
            if live.state.phase not in ACTIVE:
                live.last_seen = now
                continue
            self._credit(live, now)
            analysis = live.spec.analysis
            if analysis is not None and now >= live.next_check - EPSILON:
                self._check(live, now)
            self._progress(live, now)
            if live.current_pause() is not None and now - live.saved_at >= SAVE_EVERY:
                self._dirty = True
        self._publish()

    # --- one rollout -------------------------------------------------------------------------

    def _credit(self, live: _Live, now: float) -> None:
        """Add the time since the last tick to a running timed pause."""
        elapsed = max(0.0, now - live.last_seen)
        live.last_seen = now
        if elapsed and live.current_pause() is not None:
            live.state = msgspec.structs.replace(live.state, pause_served=live.state.pause_served + elapsed)

    def _check(self, live: _Live, now: float) -> None:
        analysis = live.spec.analysis
        assert analysis is not None
        snapshot = self.source.snapshot(now)
        baseline, live.baseline = live.baseline, snapshot
        live.next_check = now + analysis.interval
        if baseline is None or live.state.weight <= 0:
            return  # nothing to compare with yet, or no canary traffic to judge
        per_version = version_stats(baseline, snapshot, live.name)
        verdict = judge(per_version.get(live.spec.canary), per_version.get(live.stable), analysis)
        live.verdict = verdict
        live.checked_at = self.wall()
        key = (live.name, verdict.outcome)
        self.checks[key] = self.checks.get(key, 0) + 1
        state = live.state
        self._dirty = True
        if verdict.outcome == "pass":
            live.state = msgspec.structs.replace(state, inconclusive=0, step_passed=True)
            log.debug("rollout %s: check passed (%s)", live.name, verdict.canary)
        elif verdict.outcome == "fail":
            failures = state.failures + 1
            live.state = msgspec.structs.replace(state, failures=failures, inconclusive=0, step_passed=False)
            limit = analysis.failure_limit
            log.warning(
                "rollout %s: check failed (%d of %d): %s", live.name, failures, limit, verdict.explain()
            )
            if failures >= limit:
                reason = f"{failures} failed checks (failure_limit {limit}); last: {verdict.explain()}"
                self._abort(live, "fail", reason, now)
        else:
            inconclusive = state.inconclusive + 1
            live.state = msgspec.structs.replace(state, inconclusive=inconclusive)
            limit = analysis.max_inconclusive
            if limit is not None and inconclusive >= limit and state.phase == "progressing":
                reason = (
                    f"{inconclusive} inconclusive checks in a row (max_inconclusive {limit}): "
                    f"{verdict.explain()}"
                )
                self._fire(live, "hold", reason, now)

    def _progress(self, live: _Live, now: float) -> None:
        """Begin and finish steps while they allow it (a bounded number per call)."""
        for _ in range(live.steps + 2):
            state = live.state
            if state.phase != "progressing":
                return
            if state.step >= live.steps:
                self._complete(live, now, "all steps done")
                return
            if not state.entered:
                if not self._gate_open(live, now):
                    return
                self._enter(live, now, "its webhooks agreed" if live.step_hooks else "")
                continue
            if not self._step_done(live):
                return
            step = live.spec.steps[state.step]
            if state.step + 1 >= live.steps:
                self._complete(live, now, f"the last step ({describe(step)}) is done")
                return
            self._fire(live, "advance", f"step {state.step + 1} ({describe(step)}) is done", now)

    def _kind(self, live: _Live) -> str:
        return step_kind(live.spec.steps[live.state.step]) if live.state.step < live.steps else "done"

    def _step_done(self, live: _Live) -> bool:
        state = live.state
        passed = live.spec.analysis is None or state.step_passed
        kind = self._kind(live)
        if kind == "weight":
            return passed
        if kind == "timed":
            length = pause_seconds(live.spec.steps[state.step]) or 0.0
            return passed and state.pause_served >= length - EPSILON
        return False

    def _enter(self, live: _Live, now: float, why: str) -> None:
        state = live.state
        step = live.spec.steps[state.step]
        changes: dict[str, Any] = {"entered": True, "pause_served": 0.0, "step_passed": False}
        if step.set_weight is not None:
            changes["weight"] = step.set_weight
        live.state = msgspec.structs.replace(state, updated_at=self.wall(), **changes)
        live.held = ""
        live.last_seen = now
        self._dirty = True
        log.info(
            "rollout %s: step %d of %d begins: %s%s",
            live.name,
            state.step + 1,
            live.steps,
            describe(step),
            f" ({why})" if why else "",
        )
        if step.set_weight is not None and step.set_weight != state.weight:
            self._rebase(live, now)
        if step_kind(step) == "until_promoted":
            self._fire(live, "hold", f"step {state.step + 1} pauses until promoted", now)

    def _rebase(self, live: _Live, now: float) -> None:
        """Start the next check window now: each check then sees traffic at one weight."""
        analysis = live.spec.analysis
        if analysis is not None:
            live.baseline = self.source.snapshot(now)
            live.next_check = now + analysis.interval

    def _complete(self, live: _Live, now: float, reason: str) -> None:
        self._fire(live, "complete", reason, now)
        self.webhooks.notify(live.promoted_hooks, "promoted", self._payload(live, "promoted"))

    def _abort(self, live: _Live, event: Event, reason: str, now: float) -> None:
        self._cancel_gate(live)
        self._fire(live, event, reason, now)
        self.webhooks.notify(live.aborted_hooks, "aborted", self._payload(live, "aborted"))

    def _restarted(self, live: _Live, now: float) -> None:
        live.generation += 1
        self._cancel_gate(live)
        live.verdict = None
        live.held = ""
        live.baseline = None
        live.next_check = now
        live.last_seen = now

    def _fire(self, live: _Live, event: Event, reason: str, now: float) -> None:
        before = live.state
        live.state = fire(before, event, steps=live.steps, reason=reason, at=self.wall())
        live.last_seen = now
        change = live.state.history[-1]
        key = (live.name, event, change.before, change.after)
        self.transitions[key] = self.transitions.get(key, 0) + 1
        self._dirty = True
        level = logging.WARNING if change.after == "aborted" else logging.INFO
        log.log(
            level,
            "rollout %s: %s -> %s (%s), canary %s at %d%%: %s",
            live.name,
            change.before,
            change.after,
            event,
            live.spec.canary,
            change.weight,
            reason,
        )
        for listener in list(self.listeners):
            listener(live.name, change)

    # --- webhooks ---------------------------------------------------------------------------

    def _gate_open(self, live: _Live, now: float) -> bool:
        """Whether the step that has not begun may begin (its ``step`` webhooks said 2xx)."""
        if not live.step_hooks:
            return True
        key = (live.generation, live.state.step)
        task = live.gate
        if task is not None and live.gate_key != key:
            self._cancel_gate(live)  # asked for another step: its answer no longer matters
            task = None
        if task is None:
            if now < live.gate_retry_at:
                return False
            live.gate = self.webhooks.gate(live.step_hooks, self._payload(live, "step"))
            live.gate_key = key
            live.gate.add_done_callback(lambda _: self._poke())
            live.held = "waiting for the step webhooks"
            return False
        if not task.done():
            return False
        live.gate = None
        if task.cancelled():
            return False
        result = task.result()
        if result.ok:
            return True
        analysis = live.spec.analysis
        retry = analysis.interval if analysis is not None else min(h.backoff for h in live.step_hooks)
        live.gate_retry_at = now + max(MIN_SLEEP, retry)
        live.held = f"step {live.state.step + 1} held: {result.detail}"
        log.info("rollout %s: %s; asking again in %gs", live.name, live.held, retry)
        return False

    def _cancel_gate(self, live: _Live) -> None:
        if live.gate is not None:
            live.gate.cancel()
            live.gate = None
        live.gate_retry_at = 0.0

    def _payload(self, live: _Live, event: str) -> dict[str, Any]:
        """The JSON body of a webhook call: what the rollout is and where it stands."""
        state = live.state
        step = live.spec.steps[state.step] if state.step < live.steps else None
        return {
            "event": event,
            "route": live.name,
            "service": live.route.service,
            "canary": live.spec.canary,
            "stable": live.stable,
            "phase": state.phase,
            "step": state.step,
            "steps": live.steps,
            "step_description": describe(step) if step is not None else None,
            "weight": state.weight,
            "next_weight": step.set_weight if step is not None and not state.entered else None,
            "failures": state.failures,
            "reason": state.reason,
            "last_check": live.verdict.summary() if live.verdict is not None else None,
            "time": self.wall(),
        }

    # --- config, weights, persistence -------------------------------------------------------

    def _sync(self, config: Config, saved: dict[str, RolloutState], now: float) -> None:
        """Match the rollouts of ``config`` with known states (restart those whose canary changed)."""
        live_now: dict[str, _Live] = {}
        at = self.wall()
        for name, route in rollout_routes(config).items():
            assert route.rollout is not None
            canary = route.rollout.canary
            prior = saved.get(name)
            live = self._live.get(name)
            if prior is None:
                state = new_state(name, route.service, canary, at)
                log.info("rollout %s: new, canary %s of %s", name, canary, route.service)
            elif prior.canary != canary or prior.service != route.service:
                reason = f"canary changed from {prior.service}/{prior.canary} to {route.service}/{canary}"
                state = fire(prior, "restart", steps=len(route.rollout.steps), reason=reason, at=at)
                state = msgspec.structs.replace(state, service=route.service, canary=canary)
                if live is not None:
                    self._cancel_gate(live)
                    live = None  # a new rollout: nothing of the old one's runtime carries over
                log.info("rollout %s: restarts: %s", name, reason)
            else:
                state = _fit(prior, len(route.rollout.steps))
            if live is None:
                live = _Live(route, config, state, now)
            else:
                live.bind(route, config)
                live.state = state
            live_now[name] = live
        for name in self._live.keys() - live_now.keys():
            self._cancel_gate(self._live[name])
            log.info("rollout %s: no longer configured; its state is dropped", name)
        self._live = live_now

    def _publish(self) -> None:
        weights = self.weights()
        if weights != self._reported:
            self._reported = weights
            self.on_weights(weights)
        if self._dirty:
            self._dirty = False
            now = self.clock()
            for live in self._live.values():
                live.saved_at = now
            self._save(encode_states(self.states()))

    def _save(self, payload: bytes) -> None:
        if self._writing is not None:
            self._pending = payload  # the write in flight starts the newest one when it ends
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_now(payload)  # no loop (a test driving tick by hand): write here
            return
        self._writing = loop.create_task(self._write(payload))

    async def _write(self, payload: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            for _ in range(1000):
                await loop.run_in_executor(None, self._write_now, payload)
                if self._pending is None:
                    return
                payload, self._pending = self._pending, None
        finally:
            self._writing = None

    def _write_now(self, payload: bytes) -> None:
        try:
            write_atomically(state_path(self._state_dir), payload)
        except OSError as exc:
            self.state_write_errors += 1
            log.error("cannot save the rollout state in %s: %s", self._state_dir, exc)
        else:
            self.state_writes += 1

    # --- /status -----------------------------------------------------------------------------

    def _describe(self, live: _Live, now: float) -> dict[str, Any]:
        state = live.state
        step = live.spec.steps[state.step] if state.step < live.steps else None
        pause = live.current_pause()
        analysis = live.spec.analysis
        active = state.phase in ACTIVE
        return {
            "route": live.name,
            "service": live.route.service,
            "canary": live.spec.canary,
            "stable": live.stable,
            "phase": state.phase,
            "step": state.step,
            "steps": live.steps,
            "current_step": describe(step) if step is not None else None,
            "step_begun": state.entered,
            "weight": state.weight,
            "weights": live.weights(),
            "pause_remaining": max(0.0, pause - state.pause_served) if pause is not None else None,
            "failures": state.failures,
            "failure_limit": analysis.failure_limit if analysis is not None else None,
            "inconclusive": state.inconclusive,
            "reason": state.reason,
            "held": live.held or None,
            "last_check": live.verdict.summary() if live.verdict is not None else None,
            "next_check_in": max(0.0, live.next_check - now) if analysis is not None and active else None,
            "started_at": state.started_at,
            "updated_at": state.updated_at,
            "history": [msgspec.to_builtins(change) for change in state.history],
        }


def _fit(state: RolloutState, steps: int) -> RolloutState:
    """A kept state whose steps were edited: stay within the new list."""
    if state.phase in ACTIVE and state.step >= steps:
        return msgspec.structs.replace(state, step=steps - 1, entered=False, pause_served=0.0)
    return state
