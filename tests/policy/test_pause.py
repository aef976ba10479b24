"""`bjgrid pause` as an input of the owner policy (pure machine and driver), and its record
in the state dir (it survives a restart of the daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bonjourgrid.policy import (
    Action,
    Activity,
    PolicyConfig,
    PolicyDriver,
    PolicyMachine,
    PolicyState,
    pause,
)

CONFIG = PolicyConfig(resume_after=10.0, max_suspension=30.0)
QUIET = Activity(busy=False)
OWNER = Activity(busy=True)


def test_pause_suspends_gives_back_after_max_suspension_and_resume_is_immediate() -> None:
    m = PolicyMachine(CONFIG)
    assert m.observe(QUIET, 0.0, has_tasks=True) == []
    assert m.observe(QUIET, 20.0, has_tasks=True, paused=True) == [Action.SUSPEND]
    assert m.state is PolicyState.PAUSED
    assert m.observe(QUIET, 49.0, has_tasks=True, paused=True) == []
    assert m.observe(QUIET, 50.0, has_tasks=True, paused=True) == [Action.GIVE_BACK]
    assert m.observe(QUIET, 60.0, has_tasks=True, paused=True) == []  # once
    # Lifted: the owner was away all along (quiet since 0 s), so it is offered at once.
    assert m.observe(QUIET, 61.0, has_tasks=False) == [Action.RESUME]
    assert m.state is PolicyState.OK


def test_resume_with_the_owner_at_the_keyboard_waits_for_the_owner_policy() -> None:
    m = PolicyMachine(CONFIG)
    m.observe(QUIET, 0.0, has_tasks=False)
    assert m.observe(OWNER, 1.0, has_tasks=False, paused=True) == [Action.SUSPEND]
    assert m.observe(OWNER, 2.0, has_tasks=False) == []  # lifted, but the owner is here
    assert m.state is PolicyState.BUSY  # the TXT says busy now, not paused
    assert m.observe(QUIET, 3.0, has_tasks=False) == []
    assert m.observe(QUIET, 12.9, has_tasks=False) == []
    assert m.observe(QUIET, 13.0, has_tasks=False) == [Action.RESUME]


def test_pause_while_the_owner_is_back_keeps_tasks_stopped_past_the_quiet_period() -> None:
    m = PolicyMachine(CONFIG)
    assert m.observe(OWNER, 0.0, has_tasks=True) == [Action.SUSPEND]
    assert m.state is PolicyState.BUSY
    assert m.observe(QUIET, 1.0, has_tasks=True, paused=True) == []
    assert m.state is PolicyState.PAUSED
    assert m.observe(QUIET, 25.0, has_tasks=True, paused=True) == []  # quiet, but paused
    assert m.observe(QUIET, 30.0, has_tasks=True, paused=True) == [Action.GIVE_BACK]


def test_driver_applies_a_pause_at_once_and_reports_the_state() -> None:
    actions: list[Action] = []
    states: list[PolicyState] = []

    class Source:
        may_block = False

        def sample(self, now: float) -> Activity:
            return QUIET

    async def scenario() -> tuple[PolicyState, PolicyState]:
        async def act(a: Action) -> None:
            actions.append(a)

        async def publish(s: PolicyState) -> None:
            states.append(s)

        slow = PolicyConfig(resume_after=0.0, poll_interval=60.0, idle_poll_interval=60.0)
        d = PolicyDriver(Source(), slow, on_action=act, on_state=publish, engaged=lambda: False)
        runner = asyncio.create_task(d.run())
        await asyncio.sleep(0.05)
        paused = await asyncio.wait_for(d.set_paused(True), 5)  # not after a 60 s poll
        lifted = await asyncio.wait_for(d.set_paused(False), 5)
        runner.cancel()
        return paused, lifted

    paused, lifted = asyncio.run(scenario())
    assert (paused, lifted) == (PolicyState.PAUSED, PolicyState.OK)
    assert actions == [Action.SUSPEND, Action.RESUME]
    assert states == [PolicyState.OK, PolicyState.PAUSED, PolicyState.OK]


def test_a_paused_driver_starts_paused() -> None:
    async def nothing(a: Action) -> None:
        pass

    class Source:
        may_block = False

        def sample(self, now: float) -> Activity:
            return QUIET

    d = PolicyDriver(Source(), CONFIG, on_action=nothing, paused=True)
    assert asyncio.run(d.step()) == [Action.SUSPEND]
    assert d.state is PolicyState.PAUSED


def test_the_pause_is_kept_in_the_state_dir(tmp_path: Path) -> None:
    assert not pause.is_paused(tmp_path)
    pause.record(tmp_path, True)
    assert pause.is_paused(tmp_path)
    assert "bjgrid resume" in pause.pause_file(tmp_path).read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["paused"]  # no temporary left
    pause.record(tmp_path, True)  # twice is fine
    pause.record(tmp_path, False)
    assert not pause.is_paused(tmp_path)
    pause.record(tmp_path, False)  # and so is resuming a machine not paused
