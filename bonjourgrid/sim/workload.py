"""The simulated applications: their specs and how each attempt of each task behaves.

Apps are real ``AppSpec``/``TaskSpec`` values (independent tasks plus short dependency
chains, some needing two CPUs). What a task does is drawn per (app, task, attempt) from the
seed, so a re-run of the same attempt behaves the same and a retry may behave differently.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bonjourgrid.app.spec import AppSpec, Requirements, TaskSpec


@dataclass(frozen=True)
class Workload:
    seed: int
    tasks: tuple[int, int] = (4, 16)
    """Tasks per app (inclusive range)."""
    workers: tuple[int, int] = (1, 3)
    replicas: tuple[int, ...] = (1, 2, 2)
    """Replica counts to draw from."""
    duration: tuple[float, float] = (0.5, 3.0)
    fail_rate: float = 0.05
    """Probability that an attempt exits non-zero (then it is retried)."""
    two_cpu_rate: float = 0.1
    chain_rate: float = 0.3
    """Probability that a task runs after the previous one."""

    def app(self, index: int, rng: random.Random) -> AppSpec:
        n = rng.randint(*self.tasks)
        tasks: list[TaskSpec] = []
        for i in range(n):
            after = (tasks[-1].id,) if tasks and rng.random() < self.chain_rate else ()
            cpus = 2 if rng.random() < self.two_cpu_rate else 1
            tasks.append(
                TaskSpec(
                    id=f"t{i:03d}",
                    command=("sim",),
                    after=after,
                    requirements=Requirements(cpus=cpus),
                )
            )
        return AppSpec(
            name=f"app{index:04d}",
            tasks=tuple(tasks),
            workers=rng.randint(*self.workers),
            replicas=rng.choice(self.replicas),
        )

    def behaviour(self, app: str, task: str, attempt: int) -> tuple[float, int]:
        """(run time in virtual seconds, exit code) of one attempt."""
        r = random.Random(f"{self.seed}/{app}/{task}/{attempt}")
        duration = r.uniform(*self.duration)
        return duration, (1 if r.random() < self.fail_rate else 0)
