"""Poll an activity source and carry out the owner policy's actions.

    source.sample() --(every poll_interval)--> PolicyMachine.observe() --> on_action(SUSPEND |
    RESUME | GIVE_BACK), then on_state(ok | busy) whenever the TXT value changes

Threading contract: ``run()`` is one task on the daemon's event loop, started and cancelled
by its owner; ``on_action`` and ``on_state`` are awaited on that loop, one at a time, in
order. A callback that raises is logged and the driver goes on (the owner still comes first).
"""

from __future__ import annotations

import asyncio
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.config = config
        self.machine = PolicyMachine(config)
        self.on_action = on_action
        self.on_state = on_state
        self.has_tasks = has_tasks
        self.clock = clock
        self._published: PolicyState | None = None

    @property
    def state(self) -> PolicyState:
        return self.machine.state

    async def step(self) -> list[Action]:
        """One sample and its consequences (``run`` calls this every poll interval)."""
        now = self.clock()
        sample = await asyncio.to_thread(self.source.sample, now)
        actions = self.machine.observe(sample, now, has_tasks=self.has_tasks())
        for action in actions:
            log.info("owner policy: %s (%s)", action.value, sample)
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

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            started = self.clock()
            await self.step()
            spent = self.clock() - started
            await asyncio.sleep(max(0.0, self.config.poll_interval - spent))
