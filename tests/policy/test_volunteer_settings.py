"""A volunteer's settings from volunteer.toml and `bjgrid join`'s options (options win)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bonjourgrid.app.signing import UserKey
from bonjourgrid.config import (
    VolunteerFile,
    VolunteerFileError,
    parse_volunteer_file,
    read_volunteer_file,
)
from bonjourgrid.policy import FileActivitySource, PolicyConfig, PsutilActivitySource
from bonjourgrid.policy.volunteer import OWNER_ACTIVITY_FILE, settings_from

ALICE = UserKey.generate("alice").public


def test_an_absent_file_means_every_default(tmp_path: Path) -> None:
    assert read_volunteer_file(tmp_path / "volunteer.toml") == VolunteerFile()


def test_the_file_carries_policy_sandbox_trust_and_activity() -> None:
    f = parse_volunteer_file(
        f'trusted_users = ["{ALICE.dumps().strip()}"]\n'
        'owner_activity = "/run/owner"\n'
        "[policy]\nmax_suspension = 60\n[sandbox]\nmemory_mb = 512\n"
    )
    s = settings_from(f, fast=False, state_dir=Path("/state"))
    assert s.policy == PolicyConfig(max_suspension=60.0)
    assert s.sandbox.memory_mb == 512
    assert s.trusted is not None and s.trusted.find(ALICE.fingerprint) is not None
    assert s.owner_activity == Path("/run/owner")
    assert isinstance(s.activity_source(), FileActivitySource)


def test_desktop_defaults_watch_the_real_machine() -> None:
    s = settings_from(VolunteerFile(), fast=False, state_dir=Path("/state"))
    assert s.policy == PolicyConfig.desktop()
    assert s.trusted is None  # any app of the grid
    assert isinstance(s.activity_source(), PsutilActivitySource)


def test_the_fast_profile_reads_owner_activity_from_the_state_dir() -> None:
    f = parse_volunteer_file("[policy]\nmax_suspension = 3\n")
    s = settings_from(f, fast=True, state_dir=Path("/state"))
    assert s.owner_activity == Path("/state") / OWNER_ACTIVITY_FILE
    assert s.policy.max_suspension == 3.0
    assert s.policy.poll_interval == PolicyConfig.fast().poll_interval


def test_options_win_over_the_file(tmp_path: Path) -> None:
    pub = tmp_path / "bob.pub"
    bob = UserKey.generate("bob").public
    pub.write_text(bob.dumps())
    f = parse_volunteer_file(
        f'trusted_users = ["{ALICE.fingerprint}"]\nowner_activity = "/a"\n'
        "[policy]\nmax_cpus = 4\n[sandbox]\nmemory_mb = 4096\n"
    )
    s = settings_from(
        f,
        fast=False,
        state_dir=tmp_path,
        owner_activity=Path("/b"),
        max_cpus=2,
        max_memory_mb=1000,
        trust=[pub],
    )
    assert s.owner_activity == Path("/b")
    assert (s.slots(8), s.slots(1)) == (2, 1)
    assert s.memory_mb(16000) == 1000 and s.sandbox.memory_mb == 1000
    assert s.trusted is not None
    assert {u.fingerprint for u in s.trusted.users} == {ALICE.fingerprint, bob.fingerprint}


def test_an_empty_trust_list_trusts_nobody() -> None:
    s = settings_from(parse_volunteer_file("trusted_users = []\n"), fast=False, state_dir=Path())
    assert s.trusted is not None and s.trusted.users == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown setting 'colour'"),
        ("trusted_users = 'x'\n", "list of strings"),
        ("trusted_users = ['nonsense']\n", "trusted_users entry 1"),
        ("[policy]\nmax_suspension = 'x'\n", "must be a number"),
        ("[policy]\nspeed = 1\n", "unknown policy setting"),
        ("[sandbox]\nmemory_mb = true\n", "must be of type int"),
        ("[sandbox]\nuid_base = 10\n", "system uids"),
        ("[sandbox]\nwhatever = 1\n", "unknown sandbox setting"),
        ("policy = 3\n", "must be a table"),
        ("[policy\n", "volunteer.toml"),
    ],
)
def test_a_wrong_entry_is_named(text: str, message: str) -> None:
    with pytest.raises(VolunteerFileError, match=message):
        settings_from(parse_volunteer_file(text), fast=False, state_dir=Path())
