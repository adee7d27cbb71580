"""The rollout state machine, in one table, and its persistence in ``rollouts.json``.

Theory of operation
-------------------
A rollout is in one of four phases::

    progressing --pause/hold--> paused --resume/advance--> progressing
    progressing/paused --complete--> promoted      (the canary takes 100%)
    progressing/paused --abort/fail--> aborted     (the canary goes to 0%)
    aborted --retry--> progressing                 (from the first step again)
    any --restart--> progressing                   (the canary version changed)

``TRANSITIONS`` is the whole table: (phase, event) -> next phase. Anything not in it
is refused with ``InvalidTransition``. ``EFFECTS`` says what each event does to the
step fields (an advance moves to the next step, an abort sets the canary's weight to
0 ...). ``fire`` applies both and appends a ``Change`` to the bounded history; it is
pure: the caller passes the wall-clock time.

Within a phase the controller moves a few fields on its own (``entered`` when a step
begins, ``pause_served`` as a timed pause runs, the check counters); those are not
transitions.

Persistence: every rollout of the process is one JSON document, written to a
temporary file in the same directory, fsync'ed, renamed over ``rollouts.json``, and
the directory fsync'ed, so a crash leaves either the old file or the new one. It is
small (a few KiB) and written on transitions and after each check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

log = logging.getLogger("graylane")

Phase = Literal["progressing", "paused", "promoted", "aborted"]
Event = Literal["advance", "complete", "pause", "hold", "resume", "abort", "fail", "retry", "restart"]

PHASES: tuple[Phase, ...] = ("progressing", "paused", "promoted", "aborted")
ACTIVE: frozenset[str] = frozenset({"progressing", "paused"})  # the canary is being judged

TRANSITIONS: dict[tuple[Phase, Event], Phase] = {
    ("progressing", "advance"): "progressing",  # the current step is done: the next one begins
    ("paused", "advance"): "progressing",  # promote (or resume) past a paused step
    ("progressing", "complete"): "promoted",  # the last step is done, or promote --full
    ("paused", "complete"): "promoted",
    ("progressing", "pause"): "paused",  # an operator
    ("progressing", "hold"): "paused",  # a "pause: {}" step, or too many inconclusive checks
    ("paused", "resume"): "progressing",
    ("progressing", "abort"): "aborted",  # an operator
    ("paused", "abort"): "aborted",
    ("progressing", "fail"): "aborted",  # failure_limit failed checks
    ("paused", "fail"): "aborted",
    ("aborted", "retry"): "progressing",
    **{(phase, "restart"): "progressing" for phase in PHASES},  # type: ignore[misc]
}

HISTORY = 20  # changes kept per rollout


class InvalidTransition(Exception):
    def __init__(self, phase: str, event: str) -> None:
        super().__init__(f"cannot {event} a rollout that is {phase}")
        self.phase = phase
        self.event = event


class Change(msgspec.Struct, frozen=True):
    """One transition, as logged, counted and shown in /status."""

    at: float  # wall clock (time.time())
    event: str
    before: str  # phase
    after: str
    step: int  # the step index after the change
    weight: int  # the canary's percent after the change
    reason: str


class RolloutState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything about one route's rollout that must survive a restart."""

    route: str
    service: str
    canary: str
    phase: Phase = "progressing"
    step: int = 0  # index of the current step (== len(steps) once promoted)
    entered: bool = False  # the current step has begun (its "step" webhooks said yes)
    weight: int = 0  # the canary's share now, percent
    pause_served: float = 0.0  # seconds of the current timed pause served while progressing
    failures: int = 0  # failed checks since the rollout (re)started
    inconclusive: int = 0  # inconclusive checks in a row
    step_passed: bool = False  # a check passed in this step and none failed after it
    reason: str = ""  # why the last transition happened (the abort reason, ...)
    started_at: float = 0.0  # wall clock of the (re)start
    updated_at: float = 0.0
    history: tuple[Change, ...] = ()


def new_state(route: str, service: str, canary: str, at: float) -> RolloutState:
    return RolloutState(route=route, service=service, canary=canary, started_at=at, updated_at=at)


def _fresh(state: RolloutState, steps: int) -> dict[str, Any]:
    return {
        "step": 0,
        "entered": False,
        "weight": 0,
        "pause_served": 0.0,
        "failures": 0,
        "inconclusive": 0,
        "step_passed": False,
    }


# What each event does to the step fields, given the number of steps.
EFFECTS: dict[Event, Callable[[RolloutState, int], dict[str, Any]]] = {
    "advance": lambda s, n: {
        "step": min(s.step + 1, n),
        "entered": False,
        "pause_served": 0.0,
        "step_passed": False,
        "inconclusive": 0,
    },
    "complete": lambda s, n: {"step": n, "entered": True, "weight": 100, "pause_served": 0.0},
    "pause": lambda s, n: {},
    "hold": lambda s, n: {},
    "resume": lambda s, n: {"inconclusive": 0},
    "abort": lambda s, n: {"weight": 0},
    "fail": lambda s, n: {"weight": 0},
    "retry": _fresh,
    "restart": _fresh,
}


def next_phase(phase: Phase, event: Event) -> Phase:
    """The phase after ``event``; InvalidTransition when the table has no such move."""
    found = TRANSITIONS.get((phase, event))
    if found is None:
        raise InvalidTransition(phase, event)
    return found


def fire(state: RolloutState, event: Event, *, steps: int, reason: str, at: float) -> RolloutState:
    """``state`` after ``event`` (pure); InvalidTransition when not allowed in its phase."""
    after = next_phase(state.phase, event)
    changed = msgspec.structs.replace(
        state, phase=after, reason=reason, updated_at=at, **EFFECTS[event](state, steps)
    )
    if event in ("retry", "restart"):
        changed = msgspec.structs.replace(changed, started_at=at)
    change = Change(at, event, state.phase, after, changed.step, changed.weight, reason)
    return msgspec.structs.replace(changed, history=(*state.history, change)[-HISTORY:])


# --- persistence -------------------------------------------------------------------------

STATE_FILE = "rollouts.json"
FORMAT = 1


class StateFile(msgspec.Struct, kw_only=True):
    format: int = FORMAT
    rollouts: dict[str, RolloutState] = {}


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(StateFile)


def state_path(directory: str) -> str:
    return os.path.join(directory, STATE_FILE)


def encode_states(states: Mapping[str, RolloutState]) -> bytes:
    return _encoder.encode(StateFile(rollouts=dict(states)))


def write_atomically(path: str, payload: bytes) -> None:
    """Replace ``path`` with ``payload``: temp file, fsync, rename, fsync the directory."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(temp, path)
    except OSError:
        os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must reach the disk
    finally:
        os.close(dir_fd)


def save_states(directory: str, states: Mapping[str, RolloutState]) -> None:
    write_atomically(state_path(directory), encode_states(states))


def load_states(directory: str) -> dict[str, RolloutState]:
    """The saved rollouts ({} when there is no file yet).

    A file that cannot be decoded is renamed ``rollouts.json.corrupt`` and the rollouts
    start over (at the canary's weight 0: the safe side). OSError other than a missing
    file propagates: the caller decides whether that stops the start.
    """
    path = state_path(directory)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return {}
    try:
        document = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        log.error("rollout state %s is unreadable (%s); moved aside, rollouts start over", path, exc)
        os.replace(path, path + ".corrupt")
        return {}
    if document.format != FORMAT:
        log.error("rollout state %s has format %s, not %s; ignored", path, document.format, FORMAT)
        return {}
    return document.rollouts
