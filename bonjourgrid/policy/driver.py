"""Poll an activity source and carry out the owner policy's actions.

    source.sample() --(every poll_interval while tasks run, idle_poll_interval otherwise)-->
    PolicyMachine.observe() --> on_action(SUSPEND | RESUME | GIVE_BACK), then on_state(ok |
    busy | paused) whenever the TXT value changes

``paused`` (``bjgrid pause``, kept across restarts by policy/pause.py) is a manual "owner
active" input of the same machine: a pause suspends and later gives back through the very
actions the owner's return causes, so every backend obeys it the same way.

Sampling is fast while ``has_tasks()`` or ``engaged()`` (the machine serves an app: tasks may
start any moment). An idle daemon should cost next to nothing, so while neither holds the
driver sleeps the whole idle interval, and whoever changes the volunteer's state calls
``wake()``: the interval is judged again at once. Without ``engaged`` (no one to wake it) the
driver instead wakes every ``poll_interval`` to ask ``has_tasks()``, without sampling.

Threading contract: ``run()`` is one task on the daemon's event loop, started and cancelled
by its owner; ``on_action`` and ``on_state`` are awaited on that loop, one at a time, in
order. A callback that raises is logged and the driver goes on (the owner still comes first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bonjourgrid.policy.activity import ActivitySource
from bonjourgrid.policy.config import PolicyConfig
from bonjourgrid.policy.state import Action, PolicyMachine, PolicyState

log = logging.getLogger(__name__)

ActionHook = Callable[[Action], Awaitable[None]]
StateHook = Callable[[PolicyState], Awaitable[None]]


class PolicyDriver:
    def __init__(
        self,
        source: ActivitySource,
        config: PolicyConfig,
        *,
        on_action: ActionHook,
        on_state: StateHook | None = None,
        has_tasks: Callable[[], bool] = lambda: False,
        engaged: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        paused: bool = False,
    ) -> None:
        self.source = source
        self.config = config
        self.machine = PolicyMachine(config)
        self.on_action = on_action
        self.on_state = on_state
        self.has_tasks = has_tasks
        self.engaged = engaged
        self.clock = clock
        self.paused = paused
        """The owner's manual hold (``bjgrid pause``): every sample counts as active."""
        self._published: PolicyState | None = None
        self._woken = asyncio.Event()
        self._step_now = False
        self._stepped: list[asyncio.Future[None]] = []
        self._running = False

    @property
    def state(self) -> PolicyState:
        return self.machine.state

    async def step(self) -> list[Action]:
        """One sample and its consequences (``run`` calls this every poll interval)."""
        now = self.clock()
        if getattr(self.source, "may_block", True):
            sample = await asyncio.to_thread(self.source.sample, now)
        else:  # /proc reads only: a thread hand-off would cost more than the read
            sample = self.source.sample(now)
        paused = self.paused
        actions = self.machine.observe(sample, now, has_tasks=self.has_tasks(), paused=paused)
        for action in actions:
            log.info("owner policy: %s (%s%s)", action.value, sample, ", paused" * paused)
            try:
                await self.on_action(action)
            except Exception:
                log.exception("owner policy: %s failed", action.value)
        state = self.machine.state
        if state is not self._published:
            self._published = state
            if self.on_state is not None:
                try:
                    await self.on_state(state)
                except Exception:
                    log.exception("owner policy: publishing %s failed", state.value)
        return actions

    def interval(self) -> float:
        """The time between two samples now: short while there are tasks to protect."""
        fast = self.has_tasks() or (self.engaged is not None and self.engaged())
        return self.config.poll_interval if fast else self.config.idle_poll_interval

    async def set_paused(self, paused: bool, timeout: float = 10.0) -> PolicyState:
        """Hold the machine for its owner (``bjgrid pause``) or lift the hold, and return
        the state once a sample has been judged with it: tasks are stopped (or continued)
        by then, through the same actions as for an owner at the keyboard."""
        self.paused = paused
        if not self._running:
            await self.step()
            return self.state
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stepped.append(done)
        self._step_now = True
        self._woken.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), timeout)
        return self.state

    def wake(self) -> None:
        """The volunteer's state changed (reserved, released, ...): judge the interval now."""
        self._woken.set()

    async def run(self) -> None:
        """Poll until cancelled."""
        # Without engaged() nothing wakes us: look at has_tasks() every poll_interval.
        nap = self.config.poll_interval if self.engaged is None else float("inf")
        self._running = True
        try:
            while True:
                started = self.clock()
                waiters, self._stepped, self._step_now = self._stepped, [], False
                try:
                    await self.step()
                finally:
                    for w in waiters:
                        if not w.done():
                            w.set_result(None)
                # Judged again at every wake: a task or a reservation shortens the wait at
                # once; a pause or resume asks for a sample now.
                while not self._step_now and (wait := started + self.interval() - self.clock()) > 0:
                    self._woken.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._woken.wait(), min(wait, nap))
        finally:
            self._running = False
