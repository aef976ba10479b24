"""The volunteer side of a simulated machine: the product's ``Volunteer`` machine plus glue.

Mirrors ``bonjourgrid.daemon.volunteer_agent``: a ``Reserve`` is answered by the pure
machine (accepted only from Idle, or for the same app with the same or a higher term: a
re-home); heartbeats renew the lease; an unrenewed lease expires back to Idle (one timer per
lease, checked with ``Expire(now)``); a task's result is held until the coordinator
acknowledges it and is sent again to whoever coordinates after a re-home. Every message is
the real ``bonjourgrid.control.messages`` class. Anything from a stale term is answered with
``Fenced(higher term)``, as the agent does; a message for an app this machine does not serve
gets the ``AppState`` the daemon would give an ``AppQuery`` (``role`` "": it holds nothing),
which is how the sim's coordinator learns what the product's learns from a closed link.

Nothing is executed: how long an attempt runs and how it exits is the workload table's
(sim/workload.py), looked up by (app, task, attempt) when ``RunTask`` arrives.

Glue that TCP gives the real agent for free: held results are re-sent on every heartbeat
(the router may drop them), and an attempt already started is never started twice.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from bonjourgrid.control.messages import (
    CancelTask,
    Fenced,
    Heartbeat,
    HeartbeatAck,
    Release,
    Reserve,
    ReserveReply,
    ResultAck,
    RunTask,
    StageAck,
    StageApp,
    TaskResult,
)
from bonjourgrid.sim.checks import Key
from bonjourgrid.sim.clock import Timer
from bonjourgrid.states import volunteer as v

if TYPE_CHECKING:
    from bonjourgrid.sim.node import SimNode

_NO_OUTPUTS = hashlib.sha256(b"").hexdigest()
"""A simulated attempt writes no files: its outputs archive is empty."""


class VolunteerSide:
    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.machine = v.Volunteer()
        self.running: dict[Key, Timer] = {}
        self.held: dict[Key, TaskResult] = {}
        self.seen: set[Key] = set()
        self._lease_timer: Timer | None = None
        self.tasks_run = 0

    @property
    def app(self) -> str | None:
        a = self.machine.assignment
        return a.app if a else None

    # --- messages ----------------------------------------------------------------------------

    def on_message(self, src: str, msg: object) -> None:
        before = self.app
        if isinstance(msg, Reserve):
            self._reserve(src, msg)
        elif isinstance(msg, Heartbeat):
            self._heartbeat(src, msg)
        elif isinstance(msg, StageApp):
            self._stage(src, msg)
        elif isinstance(msg, RunTask):
            self._run(src, msg)
        elif isinstance(msg, CancelTask):
            if self.app == msg.app and (t := self.running.pop(self._key(msg), None)):
                t.cancel()
        elif isinstance(msg, ResultAck):
            if self._current(msg.app, msg.term):
                self.held.pop((msg.task, msg.attempt), None)
        elif isinstance(msg, Release) and self._current(msg.app, msg.term):
            self.machine.handle(v.Release(msg.app, msg.term))
        self._after(before)

    def _reserve(self, src: str, m: Reserve) -> None:
        now = self.node.clock.now
        # The simulation models coordinators that hold the app's CE key: every Reserve is proven.
        out = self.machine.handle(v.Reserve(m.app, m.coordinator, m.term, now, m.lease, True))
        a = self.machine.assignment
        if isinstance(out, v.Refused):
            if out.fenced_by:
                self.node.send(src, Fenced(m.app, out.fenced_by))
            else:
                self.node.send(src, ReserveReply(m.app, False, out.reason, 0))
            return
        if self._lease_timer is None and a is not None:
            self._lease_timer = self.node.later(m.lease, self._check_lease)
        self.node.send(src, ReserveReply(m.app, True, "", self.node.slots))
        for r in self.held.values():  # re-homed: the new coordinator gets what we hold
            self.node.send(m.coordinator, r)

    def _heartbeat(self, src: str, m: Heartbeat) -> None:
        a = self.machine.assignment
        if a is None or a.app != m.app:
            self.node.send(src, self.node.app_state(m.app))
            return
        out = self.machine.handle(v.Renew(m.app, m.term, self.node.clock.now, m.lease))
        if isinstance(out, v.Refused):
            self.node.send(src, Fenced(m.app, out.fenced_by or a.term))
            return
        running = tuple(f"{task}#{attempt}" for task, attempt in self.running)
        self.node.send(src, HeartbeatAck(m.app, m.term, running))
        for r in self.held.values():
            self.node.send(a.coordinator, r)

    def _stage(self, src: str, m: StageApp) -> None:
        a = self.machine.assignment
        if a is None or a.app != m.app:
            self.node.send(src, self.node.app_state(m.app))
            return
        if m.term < a.term:
            self.node.send(src, Fenced(m.app, a.term))
            return
        out = self.machine.handle(v.Activate(m.app, m.term))
        error = out.reason if isinstance(out, v.Refused) else ""
        self.node.send(src, StageAck(m.app, m.sha256, not error, error))

    def _run(self, src: str, m: RunTask) -> None:
        a = self.machine.assignment
        if a is None or a.app != m.app:
            self.node.send(src, self.node.app_state(m.app))
            return
        if m.term < a.term:
            self.node.send(src, Fenced(m.app, a.term))
            return
        key = self._key(m)
        if self.machine.state is not v.VolunteerState.WORKER or key in self.seen:
            return
        self.seen.add(key)
        self.tasks_run += 1
        self.node.checks.task_started(self.node.id, m.app, a.app, self.node.clock.now)
        duration, code = self.node.world.workload.behaviour(m.app, m.task, m.attempt)
        self.running[key] = self.node.later(duration, lambda: self._finished(m, duration, code))

    def _finished(self, m: RunTask, seconds: float, code: int) -> None:
        key = self._key(m)
        if self.running.pop(key, None) is None:
            return
        a = self.machine.assignment
        if a is None or a.app != m.app:
            return
        r = TaskResult(m.app, m.task, m.attempt, code, seconds, "", b"", _NO_OUTPUTS)
        self.held[key] = r
        self.node.send(a.coordinator, r)

    # --- lease and idleness ------------------------------------------------------------------

    def _check_lease(self) -> None:
        self._lease_timer = None
        before = self.app
        self.machine.handle(v.Expire(self.node.clock.now))
        a = self.machine.assignment
        if a is not None:
            self._lease_timer = self.node.later(
                a.lease_until - self.node.clock.now, self._check_lease
            )
        self._after(before)

    def _after(self, before: str | None) -> None:
        """Follow the machine's state: back to Idle drops the app's tasks and results."""
        now_app = self.app
        if now_app == before:
            return
        self.node.checks.assignment_changed(self.node.id, before, now_app, self.node.clock.now)
        if now_app is None:
            for timer in self.running.values():
                timer.cancel()
            self.running.clear()
            self.held.clear()
            self.seen.clear()
            if self._lease_timer is not None:
                self._lease_timer.cancel()
                self._lease_timer = None
            self.node.left_app(before or "")
        self.node.advertise(self.machine.advertised, now_app)

    def _current(self, app: str, term: int) -> bool:
        a = self.machine.assignment
        return a is not None and a.app == app and term >= a.term

    @staticmethod
    def _key(m: RunTask | CancelTask) -> Key:
        return (m.task, m.attempt)
