"""Why an app waits for volunteers (matchmaking.waiting_reason): the reason names what is
true — none seen, all busy with their owners' work, held by other apps (fair share), refused,
or a requirement nobody meets (with counts) — and None while a free volunteer fits."""

from __future__ import annotations

import dataclasses

from bonjourgrid.app.spec import Requirements
from bonjourgrid.coordinator.matchmaking import Offer, candidates, fits, waiting_reason


def offer(node: str, **kw: object) -> Offer:
    base = Offer(
        node=node, host=f"h-{node}", addresses=("169.254.0.1",), port=1, state="idle",
        cpus=4, slots=4, mem_mb=8000, os="linux", arch="x86_64", backends=("embedded",),
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


ANY = Requirements()


def why(offers: list[Offer], req: Requirements = ANY, **kw: object) -> str | None:
    return waiting_reason(offers, req, "embedded", app="me", **kw)  # type: ignore[arg-type]


def test_nobody_seen() -> None:
    assert why([]) == "no volunteer seen yet"


def test_all_seen_are_busy_with_their_owners_work_not_unseen() -> None:
    """The old text said "no volunteer seen yet" here."""
    offers = [offer(f"n{i}", owner_busy=True) for i in range(3)]
    assert why(offers) == "3 volunteers could run it: 3 busy with their owners' work"


def test_held_by_other_apps_says_fair_share() -> None:
    offers = [offer("a", state="worker", app="rival", slots=0), offer("b", owner_busy=True)]
    assert why(offers) == (
        "2 volunteers could run it: 1 busy with their owners' work, 1 held by other apps "
        "(fair share)"
    )


def test_a_requirement_nobody_meets_is_named_with_how_many_were_seen() -> None:
    offers = [offer(f"n{i}", owner_busy=i == 0) for i in range(4)]
    assert why(offers, Requirements(memory_mb=64000)) == (
        "no volunteer has memory_mb>=64000 (4 seen)"
    )


def test_requirements_met_apart_but_never_together_count_each() -> None:
    offers = [offer("big", mem_mb=64000), offer("lab", attributes=(("site", "lab2"),)),
              offer("plain")]  # fmt: skip
    text = why(offers, Requirements(memory_mb=64000, attributes=(("site", "lab2"),)))
    assert text == (
        "no volunteer has backend embedded, cpus>=1, memory_mb>=64000, site=lab2 together "
        "(3 seen: 1 have memory_mb>=64000, 1 have site=lab2)"
    )


def test_no_reason_while_a_free_volunteer_fits_or_all_capable_are_ours() -> None:
    assert why([offer("a"), offer("b", owner_busy=True)]) is None
    assert why([offer("a", state="worker", app="me")], mine={"a"}) is None


def test_refusals_and_the_fair_share_cap_are_said() -> None:
    assert why([offer("a")], refused={"a"}) == "1 volunteer could run it: 1 refused this app"
    assert why([offer("a")], fair_capped=True) == (
        "1 volunteer could run it: 1 idle but this app is at its fair share (fair share)"
    )


def test_an_owner_busy_volunteer_is_never_asked_nor_fitted() -> None:
    """Hostile/odd record: idle, free slots, but the owner is at it: not a candidate."""
    busy = offer("b", owner_busy=True)
    assert not fits(busy, ANY, "embedded")
    assert candidates([busy], [ANY], "embedded") == []


def test_a_worker_of_another_app_with_no_free_slots_still_counts_as_capable() -> None:
    """Its advertised slots are what the other app left: capability is its CPUs."""
    held = offer("h", state="worker", app="rival", slots=0, cpus=8)
    assert why([held], Requirements(cpus=8)) == (
        "1 volunteer could run it: 1 held by other apps (fair share)"
    )
