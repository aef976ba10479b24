"""The simulation driving the product's ``AppEngine`` (``Scenario(engine=True)``): clean on
these seeds, and a broken commit rule passed to the engine (a ``Quorum`` that acks after 0
copies: a parameter, no switch in product code) is found on the same seeds."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bonjourgrid.faulttolerance.quorum import Members
from bonjourgrid.sim.scenario import Scenario, run

SEEDS = (1, 2, 3)


class AcksAtOnce:
    """The broken rule: a result counts as committed before any replica holds it."""

    def durable(self, members: Members, acked: Mapping[str, int], seq: int) -> bool:
        return True


@pytest.mark.parametrize("seed", SEEDS)
def test_the_engine_driven_simulation_finds_no_violation(seed: int) -> None:
    r = run(Scenario(seed=seed, nodes=300, apps=120))
    assert r.violations == () and r.finished + r.lost == 120


@pytest.mark.parametrize("seed", SEEDS)
def test_a_quorum_that_acks_after_zero_copies_is_found_on_the_same_seeds(seed: int) -> None:
    r = run(Scenario(seed=seed, nodes=300, apps=120, quorum=AcksAtOnce()))
    assert any("committed by term" in v or "committed 2 times" in v for v in r.violations)
