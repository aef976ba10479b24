"""A run: build the grid, submit the apps, inject the faults, run the clock, check.

``run(Scenario(seed=...))`` is deterministic: every random draw comes from the seed (the
router's fates, the apps, the fault schedule), so the same scenario gives the same event log
and the same ``Report.digest``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bonjourgrid.app.spec import AppSpec
from bonjourgrid.config import Config
from bonjourgrid.coordinator.matchmaking import Offer
from bonjourgrid.engine.policy import Quorum
from bonjourgrid.sim.network import Faults
from bonjourgrid.sim.workload import Workload
from bonjourgrid.sim.world import World
from bonjourgrid.states.coordinator import CoordinatorRole


@dataclass(frozen=True)
class Crash:
    """At ``at``, crash ``node`` (or the coordinator of app number ``app``, or one of its
    busy workers with ``worker=True``); restart it ``restart_after`` later (None: never)."""

    at: float
    node: str | None = None
    app: int | None = None
    worker: bool = False
    restart_after: float | None = None


@dataclass(frozen=True)
class Partition:
    """At ``at``, cut ``nodes`` (or app number ``app``'s coordinator) off for ``duration``."""

    at: float
    duration: float
    nodes: tuple[str, ...] = ()
    app: int | None = None


@dataclass(frozen=True)
class Scenario:
    seed: int
    nodes: int = 1000
    apps: int = 400
    config: Config = field(default_factory=Config.lan)
    faults: Faults = field(default_factory=lambda: Faults(drop=0.01, duplicate=0.01, slow=0.02))
    workload: Workload | None = None
    submit_window: float = 5.0
    """Apps are submitted at random times in [0, submit_window)."""
    random_crashes: float = 0.02
    """Fraction of machines that crash at a random time in the first ``fault_window`` s."""
    coordinator_crashes: float = 0.03
    """Fraction of apps whose coordinator's machine crashes mid-run."""
    restart_after: float | None = 8.0
    """Crashed machines come back (fresh and idle) this long after; None: never."""
    random_partitions: int = 5
    partition_size: int = 10
    partition_duration: tuple[float, float] = (2.0, 6.0)
    fault_window: float = 25.0
    horizon: float = 600.0
    elections: bool = True
    """Replicas take over only when elected (faulttolerance/quorum.py); False: the naive
    rule, a replica silent-for-suspect_after claims at once (shows the checks can fail)."""
    quorum: Quorum | None = None
    """The commit rule given to every coordinator's ``AppEngine`` (None: the product's
    ``WriteQuorum``); a test passes a broken one to show the seeds find it."""
    crashes: tuple[Crash, ...] = ()
    partitions: tuple[Partition, ...] = ()


@dataclass(frozen=True)
class Report:
    seed: int
    nodes: int
    apps: int
    finished: int
    lost: int
    virtual_seconds: float
    wall_seconds: float
    events: int
    messages: int
    tasks_run: int
    commits: int
    """Results committed: distinct (app, task, attempt); a later term committing the same
    journal entry again after a takeover is the same commit."""
    takeovers: int
    step_downs: int
    violations: tuple[str, ...]
    digest: str

    def summary(self) -> str:
        ok = "ok" if not self.violations else f"{len(self.violations)} VIOLATIONS"
        return (
            f"seed {self.seed}: {self.nodes} nodes, {self.apps} apps ({self.finished} finished, "
            f"{self.lost} lost with every copy), {self.virtual_seconds:.1f} virtual s in "
            f"{self.wall_seconds:.2f} s, {self.events} events, {self.messages} messages, "
            f"{self.tasks_run} task runs, {self.commits} commits, {self.takeovers} takeovers, "
            f"{self.step_downs} step-downs: {ok} [{self.digest[:12]}]"
        )


def build(s: Scenario) -> tuple[World, list[str]]:
    """The grid with every app submitted and every fault scheduled; app ids by number."""
    workload = s.workload or Workload(seed=s.seed)
    world = World(s.seed, s.config, s.faults, workload, s.quorum)
    world.elections = s.elections
    rng = world.rng
    for i in range(s.nodes):
        slots = rng.choice((1, 2, 2, 4))
        world.add_node(
            Offer(
                node=f"n{i:04d}",
                host=f"h{i:04d}",
                addresses=(),
                port=0,
                state="idle",
                cpus=slots,
                slots=slots,
                mem_mb=4096,
                os="linux",
                arch="x86_64",
                backends=("embedded",),
            )
        )
    ids = list(world.nodes)
    submitters = rng.sample(ids, min(s.apps, len(ids)))
    apps: list[str] = []
    for i in range(s.apps):
        spec = workload.app(i, rng)
        app_id = f"a{i:04d}"
        apps.append(app_id)
        at = rng.uniform(0.0, s.submit_window)
        world.clock.call_at(at, _submitter(world, submitters[i % len(submitters)], app_id, spec))
    faults = list(s.crashes) + _random_crashes(s, rng, ids, len(apps))
    for c in faults:
        world.clock.call_at(c.at, _crasher(world, c, apps))
    parts = list(s.partitions)
    for _ in range(s.random_partitions):
        start = rng.uniform(0.0, s.fault_window)
        nodes = tuple(rng.sample(ids, s.partition_size))
        parts.append(Partition(start, rng.uniform(*s.partition_duration), nodes))
    for k, p in enumerate(parts, start=1):
        world.clock.call_at(p.at, _partitioner(world, p, k, apps))
    return world, apps


def run(s: Scenario) -> Report:
    started = time.perf_counter()
    world, apps = build(s)
    clock = world.clock
    while clock.now < s.horizon:
        clock.run(clock.now + 1.0)
        if clock.now < s.submit_window + 1.0:
            continue
        open_apps = [a for a in apps if a not in world.checks.final]
        if not open_apps or not (set(open_apps) & world.holders()):
            break
    lost = {a for a in apps if a not in world.checks.final and a not in world.holders()}
    world.checks.finish(lost)
    ch = world.checks
    return Report(
        seed=s.seed,
        nodes=s.nodes,
        apps=len(apps),
        finished=sum(1 for a in apps if ch.final.get(a, (0, ""))[1] == "finished"),
        lost=len(lost),
        virtual_seconds=clock.now,
        wall_seconds=time.perf_counter() - started,
        events=clock.events_run,
        messages=world.net.sent,
        tasks_run=sum(n.volunteer.tasks_run for n in world.nodes.values()),
        commits=sum(len({c.attempt for c in cs}) for cs in ch.commits.values()),
        takeovers=ch.takeovers,
        step_downs=ch.step_downs,
        violations=tuple(ch.violations),
        digest=ch.digest(),
    )


def small(seed: int, **changes: object) -> Scenario:
    """A quiet small grid (no random faults) for targeted scenarios."""
    base = Scenario(
        seed=seed,
        nodes=12,
        apps=1,
        faults=Faults(),
        random_crashes=0.0,
        coordinator_crashes=0.0,
        random_partitions=0,
        submit_window=0.1,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# --- fault injection ---------------------------------------------------------------------------


def _submitter(world: World, node_id: str, app_id: str, spec: AppSpec) -> Callable[[], None]:
    def submit() -> None:
        node = world.nodes[node_id]
        if not node.up:
            node = world.restart(node_id)
        world.checks.app_submitted(app_id, spec, node_id)
        node.coords[app_id] = world.coordinator(node, app_id, spec, CoordinatorRole(app_id))

    return submit


def _random_crashes(s: Scenario, rng: random.Random, ids: list[str], apps: int) -> list[Crash]:
    out = [
        Crash(rng.uniform(0.0, s.fault_window), node=n, restart_after=s.restart_after)
        for n in rng.sample(ids, int(s.random_crashes * len(ids)))
    ]
    for a in rng.sample(range(apps), int(s.coordinator_crashes * apps)):
        at = rng.uniform(s.submit_window + 1.0, s.fault_window)
        out.append(Crash(at, app=a, restart_after=s.restart_after))
    return out


def _coordinator_of(world: World, app: str) -> str | None:
    for n in world.nodes.values():
        if n.up and (c := n.coords.get(app)) is not None and c.role.coordinating:
            return n.id
    return None


def _crasher(world: World, c: Crash, apps: list[str]) -> Callable[[], None]:
    def crash() -> None:
        target = c.node
        if c.app is not None:
            app = apps[c.app]
            coord = _coordinator_of(world, app)
            if c.worker and coord is not None:
                busy = [
                    n.id
                    for n in world.nodes.values()
                    if n.up and n.id != coord and n.volunteer.app == app and n.volunteer.running
                ]
                target = busy[0] if busy else None
            else:
                target = coord
        if target is None or not world.nodes[target].up:
            return
        world.crash(target)
        if c.restart_after is not None:
            node_id = target
            world.clock.call_later(c.restart_after, lambda: _restart(world, node_id))

    return crash


def _partitioner(world: World, p: Partition, island: int, apps: list[str]) -> Callable[[], None]:
    def cut() -> None:
        nodes = set(p.nodes)
        if p.app is not None and (coord := _coordinator_of(world, apps[p.app])) is not None:
            nodes.add(coord)
        world.net.isolate(nodes, island)
        world.checks.log(f"partition {sorted(nodes)} for {p.duration:g} s")

        def heal() -> None:
            world.net.heal(nodes)
            world.checks.log(f"heal {sorted(nodes)}")

        world.clock.call_later(p.duration, heal)

    return cut


def _restart(world: World, node_id: str) -> None:
    world.restart(node_id)
