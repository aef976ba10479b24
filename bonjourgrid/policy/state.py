"""The owner's presence, as a pure state machine: samples and time in, actions out.

Theory of operation. The machine is in one of two states:

- ``AVAILABLE``: the owner is away; the machine is offered (TXT ``p=ok``) and tasks run.
- ``OWNER_ACTIVE``: the owner is using the machine; it is not offered (``p=busy``) and any
  running tasks are stopped (SIGSTOP).

Every sample of owner activity is judged *active* or *quiet* (``Activity.judge``: an injected
verdict wins; else recent keyboard/mouse input or an owner CPU load at or above ``high_load``
is active, a load at or below ``background_load`` with no recent input is quiet, and in
between the previous judgement stands). Then:

    AVAILABLE     + active                            -> OWNER_ACTIVE, emit SUSPEND
    OWNER_ACTIVE  + quiet for ``resume_after``        -> AVAILABLE,    emit RESUME
    OWNER_ACTIVE  + tasks stopped ``max_suspension``  -> (stays),      emit GIVE_BACK once

Any active sample restarts the quiet period. The machine starts AVAILABLE unless its first
sample is active (keyboard idleness known from the OS counts from before the start).
Nothing here reads a clock: ``now`` is passed in (monotonic seconds).

Pause (``bjgrid pause``) is one more input: while ``paused`` every sample counts as active,
so the machine suspends, then gives back after ``max_suspension``, exactly as for an owner
who came back; its TXT value is ``paused`` (coordinators skip anything but ``ok``). When the
pause is lifted the real samples decide again, and the quiet period counts from the last
*real* activity: an owner who was away all along gets the machine offered at once (if that
quiet lasted ``resume_after``), one still at the keyboard only after ``resume_after``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bonjourgrid.policy.config import PolicyConfig


class Presence(enum.Enum):
    AVAILABLE = "available"
    """The owner is away: the machine is offered and tasks run."""
    OWNER_ACTIVE = "owner-active"
    """The owner is at work: not offered, tasks stopped."""


class PolicyState(str, enum.Enum):
    """The owner-policy value of the TXT record (``p``): coordinators skip busy machines."""

    OK = "ok"
    BUSY = "busy"
    PAUSED = "paused"
    """Not offered because its owner said so (``bjgrid pause``); read as busy by peers."""


class Action(enum.Enum):
    SUSPEND = "suspend"
    """Stop every running task (SIGSTOP its process group) within the poll interval."""
    RESUME = "resume"
    """Continue every stopped task (SIGCONT)."""
    GIVE_BACK = "give-back"
    """Tasks were stopped too long: hand them back to their coordinator to run elsewhere."""


@dataclass(frozen=True)
class Activity:
    """One sample of the owner's activity."""

    owner_load: float = 0.0
    """CPUs busy with the owner's work (everything but the grid's own task processes)."""
    input_idle: float | None = None
    """Seconds since the last keyboard/mouse input; None where the OS does not tell."""
    busy: bool | None = None
    """An injected verdict (tests, or an owner's explicit switch); None: judge the numbers."""

    def judge(self, config: PolicyConfig, was_active: bool) -> bool:
        """Whether this sample shows the owner at the machine."""
        if self.busy is not None:
            return self.busy
        if self.input_idle is not None and self.input_idle < config.input_busy_within:
            return True
        if self.owner_load >= config.high_load:
            return True
        if self.owner_load <= config.background_load:
            return False
        return was_active


class PolicyMachine:
    """The owner's presence for one volunteer. Not thread-safe: one owner calls ``observe``."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self.presence: Presence | None = None  # decided by the first sample
        self.active = False
        """The judgement of the last sample (the real owner's, pause aside)."""
        self.real_quiet_since: float | None = None
        """Since when the real samples have been quiet (None: the last one was active)."""
        self.paused = False
        """The owner's manual hold (``bjgrid pause``), as of the last sample."""
        self.quiet_since: float | None = None
        self.busy_since: float | None = None
        self.given_back = False

    @property
    def state(self) -> PolicyState:
        if self.presence is Presence.AVAILABLE:
            return PolicyState.OK
        return PolicyState.PAUSED if self.paused else PolicyState.BUSY

    def observe(
        self, sample: Activity, now: float, *, has_tasks: bool, paused: bool = False
    ) -> list[Action]:
        """Take one sample at ``now`` (``paused``: the owner's manual hold); the actions to
        carry out, in order."""
        self.active = real = sample.judge(self.config, self.active)
        if real:
            self.real_quiet_since = None
        elif self.real_quiet_since is None:
            self.real_quiet_since = now
        self.paused = paused
        active = real or paused
        if self.presence is None:
            self.presence = Presence.OWNER_ACTIVE if active else Presence.AVAILABLE
            if active:
                self.busy_since, self.quiet_since, self.given_back = now, None, False
                return [Action.SUSPEND]
            return []
        if self.presence is Presence.AVAILABLE:
            if not active:
                return []
            self.presence = Presence.OWNER_ACTIVE
            self.busy_since, self.quiet_since, self.given_back = now, None, False
            return [Action.SUSPEND]
        # OWNER_ACTIVE: quiet counts from the last real activity, never while paused
        self.quiet_since = None if paused else self.real_quiet_since
        if self.quiet_since is not None and now - self.quiet_since >= self.config.resume_after:
            self.presence = Presence.AVAILABLE
            self.busy_since = self.quiet_since = None
            return [Action.RESUME]
        assert self.busy_since is not None
        if (
            has_tasks
            and not self.given_back
            and now - self.busy_since >= self.config.max_suspension
        ):
            self.given_back = True
            return [Action.GIVE_BACK]
        return []
