"""Run simulated grids from the command line: ``python -m bonjourgrid.sim --seed 3``.

Prints one summary line per seed and, with ``--violations``, what the checks found.
"""

from __future__ import annotations

import argparse
import dataclasses

from bonjourgrid.config import Config
from bonjourgrid.sim.scenario import Scenario, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bonjourgrid.sim")
    p.add_argument("--seed", type=int, nargs="+", default=[1])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--apps", type=int, default=400)
    p.add_argument("--partitions", type=int, default=5, help="random partitions per run")
    p.add_argument("--profile", choices=("lan", "fast"), default="lan")
    p.add_argument("--naive", action="store_true", help="replicas claim without an election")
    p.add_argument("--violations", action="store_true", help="print every violation")
    p.add_argument("--log", action="store_true", help="print the event log")
    args = p.parse_args(argv)
    config = Config.fast() if args.profile == "fast" else Config.lan()
    bad = 0
    for seed in args.seed:
        s = Scenario(seed=seed, nodes=args.nodes, apps=args.apps, config=config)
        s = dataclasses.replace(s, random_partitions=args.partitions, elections=not args.naive)
        r = run(s)
        print(r.summary())
        if args.violations:
            for v in r.violations:
                print("  ", v)
        bad += bool(r.violations)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
