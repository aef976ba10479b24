"""Simulation tier at scale: 1000 machines, 400 apps, many seeds; prints figures per seed.

    .venv/bin/python bench/sim_scale.py [--seeds 1-20] [--nodes 1000] [--apps 400]

Two rows per seed: crashes + lossy network (no partitions), then the same with random
partitions. Figures, not assertions: virtual seconds, wall seconds, events, messages,
takeovers and the number of violated checks (0 expected without partitions; with them,
0 expected with them too since the quorum rules, see docs/simulation.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from bonjourgrid.sim.scenario import Scenario, run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="1-10")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--apps", type=int, default=400)
    args = p.parse_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    for label, partitions in (("crashes+loss", 0), ("crashes+loss+partitions", 5)):
        walls: list[float] = []
        bad = 0
        for seed in seeds:
            s = Scenario(seed=seed, nodes=args.nodes, apps=args.apps)
            r = run(dataclasses.replace(s, random_partitions=partitions))
            walls.append(r.wall_seconds)
            bad += bool(r.violations)
            print(f"{label:24} {r.summary()}")
        print(
            f"{label:24} {len(walls)} seeds: wall median {statistics.median(walls):.2f} s, "
            f"max {max(walls):.2f} s; seeds with violations: {bad}"
        )


if __name__ == "__main__":
    main()
