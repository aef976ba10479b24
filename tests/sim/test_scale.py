"""1000 machines, 400 concurrent apps, random crashes (with restarts), loss, duplicates,
delays and partitions: the three properties hold and each seed's trace is reproducible.

More seeds: ``BJGRID_SIM_SEEDS=1-20 pytest tests/sim/test_scale.py`` or bench/sim_scale.py.
"""

from __future__ import annotations

import os

import pytest

from bonjourgrid.sim.scenario import Scenario, run


def _seeds() -> list[int]:
    spec = os.environ.get("BJGRID_SIM_SEEDS", "1-2")
    lo, _, hi = spec.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


@pytest.mark.parametrize("seed", _seeds())
def test_1000_nodes_400_apps_with_crashes_and_a_lossy_network(seed: int) -> None:
    r = run(Scenario(seed=seed, random_partitions=0))
    assert r.violations == (), r.summary()
    assert r.finished + r.lost == 400
    assert r.nodes == 1000 and r.takeovers >= 1
    print(r.summary())


def test_a_seed_gives_the_same_trace_twice() -> None:
    s = Scenario(seed=11, nodes=300, apps=100)
    a, b = run(s), run(s)
    assert a.digest == b.digest
    assert (a.events, a.messages, a.commits) == (b.events, b.messages, b.commits)
    assert run(Scenario(seed=12, nodes=300, apps=100)).digest != a.digest


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_1000_nodes_400_apps_with_partitions_one_term_commits_each_result(seed: int) -> None:
    """Random partitions cut coordinators and replicas off: a coordinator cut off from a
    write quorum of its replica set commits nothing, a replica takes over only with an
    election quorum, so no result is committed by two terms (seeds 3-5 did, before
    faulttolerance/quorum.py; tests/sim/test_targeted_scenarios.py keeps the naive rule
    failing these checks)."""
    r = run(Scenario(seed=seed))
    assert r.violations == (), r.summary()
    assert r.finished + r.lost == 400
    assert r.takeovers >= 1 and r.step_downs >= 1
    print(r.summary())
