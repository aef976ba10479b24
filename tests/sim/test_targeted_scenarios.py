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
    """Without the pre-vote, a replica cut off alone claims a term and commits in parallel.

    This is the sim proving its own checks can fail: the naive rule ("silent for
    suspect_after, best-ranked: claim term + 1") double-commits results.
    """
    world, apps = build(small(0, workload=_workload(0), prevote=False))
    world.clock.run(3.0)
    replica = next(n for n in world.nodes.values() if apps[0] in n.replicas)
    world.net.isolate({replica.id}, island=1)
    world.clock.run(30.0)
    assert world.checks.takeovers >= 1
    assert any("committed" in v for v in world.checks.violations)


def test_with_the_pre_vote_a_replica_cut_off_alone_does_not_claim() -> None:
    world, apps = build(small(0, workload=_workload(0)))
    world.clock.run(3.0)
    replica = next(n for n in world.nodes.values() if apps[0] in n.replicas)
    world.net.isolate({replica.id}, island=1)
    world.clock.run(30.0)
    assert world.checks.takeovers == 0
    assert world.checks.violations == []
