"""Small targeted runs: a coordinator crash, a coordinator partition, a worker crash.

Each drives the product's own state machines, task table, journal entries and scheduler on
12 simulated machines with one app of 30 tasks, 4 workers and 2 replicas.
"""

from __future__ import annotations

import pytest

from bonjourgrid.sim.scenario import Crash, Partition, Report, build, run, small
from bonjourgrid.sim.workload import Workload

SEEDS = [0, 1, 2, 4]


def _workload(seed: int) -> Workload:
    return Workload(seed=seed, tasks=(30, 30), workers=(4, 4), replicas=(2,), fail_rate=0.0)


def _ok(r: Report) -> None:
    assert r.violations == ()
    assert r.finished == 1
    assert r.commits == 30  # every task's result committed exactly once


@pytest.mark.parametrize("seed", SEEDS)
def test_coordinator_crash_mid_run_with_two_replicas_completes_every_result_once(
    seed: int,
) -> None:
    r = run(small(seed, workload=_workload(seed), crashes=(Crash(5.0, app=0),)))
    _ok(r)
    assert r.takeovers == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_partitioned_coordinator_steps_down_and_one_term_commits_each_result(seed: int) -> None:
    r = run(
        small(
            seed,
            workload=_workload(seed),
            partitions=(Partition(5.0, 5.0, app=0),),
            horizon=60.0,
        )
    )
    _ok(r)
    assert r.takeovers == 1  # the run ends with the app, maybe before the heal: see below


def test_partitioned_coordinator_steps_down_after_the_heal() -> None:
    world, _ = build(small(4, workload=_workload(4), partitions=(Partition(5.0, 5.0, app=0),)))
    world.clock.run(30.0)
    assert world.checks.takeovers == 1
    assert world.checks.step_downs == 1
    assert world.checks.violations == []


@pytest.mark.parametrize("seed", SEEDS)
def test_worker_crash_requeues_its_task_and_commits_it_once(seed: int) -> None:
    r = run(small(seed, workload=_workload(seed), crashes=(Crash(5.0, app=0, worker=True),)))
    _ok(r)
    assert r.tasks_run > 30  # the crashed worker's task ran again elsewhere
    assert r.takeovers == 0


def test_the_checks_catch_a_split_brain_when_replicas_claim_without_asking() -> None:
    """Without elections, a replica cut off alone claims a term while the coordinator,
    which still reaches a write quorum, commits on.

    This is the sim proving its own checks can fail: the naive rule ("silent for
    suspect_after, best-ranked: claim term + 1") commits results in two terms.
    """
    world, apps = build(small(0, workload=_workload(0), elections=False))
    world.clock.run(3.0)
    replica = next(n for n in world.nodes.values() if apps[0] in n.replicas)
    world.net.isolate({replica.id}, island=1)
    world.clock.run(30.0)
    assert world.checks.takeovers >= 1
    assert any("committed" in v for v in world.checks.violations)


def test_a_replica_cut_off_alone_finds_no_election_quorum() -> None:
    """replicas: 2 (E = 2): the other replica still hears the coordinator and refuses."""
    world, apps = build(small(0, workload=_workload(0)))
    world.clock.run(3.0)
    replica = next(n for n in world.nodes.values() if apps[0] in n.replicas)
    world.net.isolate({replica.id}, island=1)
    world.clock.run(30.0)
    assert world.checks.takeovers == 0
    assert world.checks.violations == []


def test_a_coordinator_cut_off_from_its_only_replica_commits_nothing_meanwhile() -> None:
    """replicas: 1 (W = E = 1): the replica, cut off alone, is elected by its own vote; the
    coordinator, unable to reach W of its set, freezes its commits (the workers keep their
    results) instead of choosing a new replica on its side, and steps down at the heal."""
    load = Workload(seed=3, tasks=(30, 30), workers=(4, 4), replicas=(1,), fail_rate=0.0)
    world, apps = build(small(3, workload=load))
    world.clock.run(3.0)
    replica = next(n for n in world.nodes.values() if apps[0] in n.replicas)
    world.net.isolate({replica.id}, island=1)
    old = next(c for n in world.nodes.values() if (c := n.coords.get(apps[0])) is not None)
    world.clock.run(6.0)
    assert apps[0] in replica.coords  # elected alone, on its island
    world.clock.run(8.0)
    assert old.role.coordinating and old.pending  # results wait, uncommitted
    by_old = [c for cs in world.checks.commits.values() for c in cs if c.term == 1]
    assert by_old and max(c.at for c in by_old) < 3.1  # none since the cut
    world.net.heal({replica.id})
    world.clock.run(60.0)
    assert world.checks.takeovers == 1 and world.checks.step_downs == 1
    assert world.checks.violations == []
