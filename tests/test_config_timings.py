"""BJGRID_TIMING: a profile's timings overridden by name, bad entries named."""

from __future__ import annotations

import pytest

from bonjourgrid.config import Config


def test_named_timings_override_the_profile_and_the_rest_stays() -> None:
    c = Config.fast().with_timings("suspect_after=20, reserve_lease=60")
    assert (c.suspect_after, c.reserve_lease) == (20.0, 60.0)
    assert c.heartbeat_interval == Config.fast().heartbeat_interval
    assert Config.lan().with_timings("") == Config.lan()


def test_from_env_reads_the_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BJGRID_PROFILE", "fast")
    monkeypatch.setenv("BJGRID_TIMING", "takeover_stagger=0.5")
    c = Config.from_env()
    assert c.profile == "fast" and c.takeover_stagger == 0.5


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("profile=3", "'profile' is not a timing"),
        ("suspect_after", "expected suspect_after=<seconds>"),
        ("suspect_after=soon", "expected suspect_after=<seconds>"),
        ("suspect_after=-1", "finite and >= 0"),
        ("suspect_after=inf", "finite and >= 0"),
        ("suspect_after=nan", "finite and >= 0"),
    ],
)
def test_a_bad_override_is_refused_naming_it(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Config.lan().with_timings(text)
