"""The owner-presence state machine (pure, time passed in) and the policy settings."""

from __future__ import annotations

import pytest

from bonjourgrid.policy import (
    Action,
    Activity,
    PolicyConfig,
    PolicyConfigError,
    PolicyMachine,
    PolicyState,
    Presence,
    task_caps,
)

CFG = PolicyConfig(resume_after=10.0, max_suspension=30.0)
IDLE = Activity(busy=False)
BUSY = Activity(busy=True)


def started(sample: Activity = IDLE, *, now: float = 0.0) -> PolicyMachine:
    m = PolicyMachine(CFG)
    m.observe(sample, now, has_tasks=False)
    return m


def test_a_quiet_machine_is_offered_from_the_first_sample() -> None:
    m = PolicyMachine(CFG)
    assert m.observe(IDLE, 0.0, has_tasks=False) == []
    assert m.presence is Presence.AVAILABLE and m.state is PolicyState.OK


def test_a_machine_in_use_at_start_is_not_offered() -> None:
    m = PolicyMachine(CFG)
    assert m.observe(BUSY, 0.0, has_tasks=False) == [Action.SUSPEND]
    assert m.state is PolicyState.BUSY


def test_the_owner_coming_back_suspends_at_once() -> None:
    m = started()
    assert m.observe(BUSY, 5.0, has_tasks=True) == [Action.SUSPEND]
    assert m.presence is Presence.OWNER_ACTIVE
    assert m.observe(BUSY, 5.5, has_tasks=True) == []  # said once


def test_tasks_resume_only_after_a_full_quiet_period() -> None:
    m = started()
    m.observe(BUSY, 0.0, has_tasks=True)
    assert m.observe(IDLE, 1.0, has_tasks=True) == []
    assert m.observe(IDLE, 10.9, has_tasks=True) == []
    assert m.observe(BUSY, 10.95, has_tasks=True) == []  # back again: the quiet period restarts
    assert m.observe(IDLE, 11.0, has_tasks=True) == []
    assert m.observe(IDLE, 20.9, has_tasks=True) == []
    assert m.observe(IDLE, 21.0, has_tasks=True) == [Action.RESUME]
    assert m.state is PolicyState.OK


def test_tasks_suspended_too_long_are_given_back_once() -> None:
    m = started()
    m.observe(BUSY, 100.0, has_tasks=True)
    assert m.observe(BUSY, 129.9, has_tasks=True) == []
    assert m.observe(BUSY, 130.0, has_tasks=True) == [Action.GIVE_BACK]
    assert m.observe(BUSY, 131.0, has_tasks=True) == []
    assert m.state is PolicyState.BUSY
    assert m.observe(IDLE, 140.0, has_tasks=False) == []
    assert m.observe(IDLE, 150.0, has_tasks=False) == [Action.RESUME]


def test_nothing_is_given_back_without_tasks() -> None:
    m = started()
    m.observe(BUSY, 0.0, has_tasks=False)
    assert m.observe(BUSY, 100.0, has_tasks=False) == []


def test_a_new_busy_period_can_give_back_again() -> None:
    m = started()
    m.observe(BUSY, 0.0, has_tasks=True)
    assert m.observe(BUSY, 30.0, has_tasks=True) == [Action.GIVE_BACK]
    m.observe(IDLE, 31.0, has_tasks=False)
    assert m.observe(IDLE, 41.0, has_tasks=False) == [Action.RESUME]
    assert m.observe(BUSY, 50.0, has_tasks=True) == [Action.SUSPEND]
    assert m.observe(BUSY, 80.0, has_tasks=True) == [Action.GIVE_BACK]


@pytest.mark.parametrize(
    ("sample", "was_active", "active"),
    [
        (Activity(owner_load=0.6), False, True),  # at/above high_load
        (Activity(owner_load=0.4), False, False),  # between: the previous judgement stands
        (Activity(owner_load=0.4), True, True),
        (Activity(owner_load=0.2), True, False),  # at/below background_load
        (Activity(owner_load=0.0, input_idle=5.0), False, True),  # recent input
        (Activity(owner_load=0.0, input_idle=600.0), True, False),
        (Activity(owner_load=2.0, busy=False), True, False),  # an injected verdict wins
    ],
)
def test_samples_are_judged_like_htcondors_desktop_policy(
    sample: Activity, was_active: bool, active: bool
) -> None:
    assert sample.judge(PolicyConfig(), was_active) is active


def test_load_between_thresholds_does_not_flap() -> None:
    m = started()
    assert m.observe(Activity(owner_load=0.7), 1.0, has_tasks=True) == [Action.SUSPEND]
    for t in range(2, 30):
        assert m.observe(Activity(owner_load=0.4), float(t), has_tasks=True) == []
    assert m.presence is Presence.OWNER_ACTIVE


def test_policy_state_strings_fit_the_txt_record() -> None:
    assert [s.value for s in PolicyState] == ["ok", "busy", "paused"]


def test_settings_from_a_config_table() -> None:
    cfg = PolicyConfig().replace({"resume_after": 60, "max_cpus": 2})
    assert cfg.resume_after == 60.0 and isinstance(cfg.resume_after, float)
    assert cfg.max_cpus == 2
    with pytest.raises(PolicyConfigError, match="unknown policy setting 'resum'"):
        PolicyConfig().replace({"resum": 1})
    with pytest.raises(PolicyConfigError, match="'max_cpus' must be an integer"):
        PolicyConfig().replace({"max_cpus": 1.5})
    with pytest.raises(PolicyConfigError, match="must be a number"):
        PolicyConfig().replace({"resume_after": "soon"})
    with pytest.raises(PolicyConfigError, match="background_load"):
        PolicyConfig(high_load=0.2, background_load=0.3)


def test_caps_follow_boincs_memory_shares_and_keep_disk_free() -> None:
    cfg = PolicyConfig(max_cpus=2, max_disk_mb=5000, min_free_disk_mb=1000)
    idle = task_caps(cfg, cpus=8, memory_mb=16000, free_disk_mb=100000, owner_present=False)
    assert (idle.cpus, idle.memory_mb, idle.disk_mb) == (2, 14400, 5000)
    used = task_caps(cfg, cpus=1, memory_mb=16000, free_disk_mb=3000, owner_present=True)
    assert (used.cpus, used.memory_mb, used.disk_mb) == (1, 8000, 2000)
    full = task_caps(cfg, cpus=4, memory_mb=1000, free_disk_mb=500, owner_present=True)
    assert full.disk_mb == 0
