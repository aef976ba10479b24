"""Simulation tier at scale: 1000 machines, 400 apps, many seeds; prints figures per seed.

    python bench/sim_scale.py [--quick] [--seeds 1-20] [--nodes 1000] [--apps 400]

Two runs per seed: crashes + lossy network (no partitions, the baseline), then the same seed with
random partitions. Figures, not assertions: virtual seconds, wall seconds, events, messages,
takeovers and the number of violated checks (0 expected, with partitions too since the quorum
rules, see docs/simulation.md); the table gives the partitioned run as a ratio of the baseline.
``--quick``: seeds 1-2 of 200 machines and 60 apps. Figures go to bench/results/sim_scale.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

from _common import print_table, ratio, write_results

from bonjourgrid.sim.scenario import Scenario, run

LABELS = (("crashes+loss", 0), ("crashes+loss+partitions", 5))
"""(label, random partitions): the baseline first."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="seeds 1-2, 200 machines, 60 apps")
    p.add_argument("--seeds", help="a seed or a range LO-HI (default 1-10; --quick: 1-2)")
    p.add_argument("--nodes", type=int, help="machines (default 1000; --quick: 200)")
    p.add_argument("--apps", type=int, help="apps (default 400; --quick: 60)")
    args = p.parse_args(argv)
    lo, _, hi = (args.seeds or ("1-2" if args.quick else "1-10")).partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    nodes = args.nodes or (200 if args.quick else 1000)
    apps = args.apps or (60 if args.quick else 400)
    per_label: dict[str, list[dict[str, Any]]] = {}
    for label, partitions in LABELS:
        rows = per_label[label] = []
        for seed in seeds:
            s = Scenario(seed=seed, nodes=nodes, apps=apps)
            r = run(dataclasses.replace(s, random_partitions=partitions))
            print(f"{label:24} {r.summary()}", flush=True)
            rows.append(
                {
                    "seed": seed,
                    "wall_s": r.wall_seconds,
                    "virtual_s": r.virtual_seconds,
                    "events": r.events,
                    "messages": r.messages,
                    "takeovers": r.takeovers,
                    "finished": r.finished,
                    "lost": r.lost,
                    "violations": len(r.violations),
                }
            )
    summary: dict[str, dict[str, float]] = {}
    for label, rows in per_label.items():
        summary[label] = {
            "wall_median_s": statistics.median(r["wall_s"] for r in rows),
            "wall_max_s": max(r["wall_s"] for r in rows),
            "virtual_median_s": statistics.median(r["virtual_s"] for r in rows),
            "messages_median": statistics.median(r["messages"] for r in rows),
            "seeds_with_violations": sum(1 for r in rows if r["violations"]),
        }
    base = summary[LABELS[0][0]]
    print_table(
        f"simulation, {nodes} machines, {apps} apps, seeds {seeds.start}-{seeds.stop - 1}",
        ("run", "wall med s", "x base", "virtual med s", "x base", "msgs med", "bad seeds"),
        [
            (
                label,
                f["wall_median_s"],
                ratio(f["wall_median_s"], base["wall_median_s"]),
                f["virtual_median_s"],
                ratio(f["virtual_median_s"], base["virtual_median_s"]),
                f["messages_median"],
                f["seeds_with_violations"],
            )
            for label, f in summary.items()
        ],
    )
    figures: dict[str, object] = {
        "nodes": nodes,
        "apps": apps,
        "seeds": list(seeds),
        "summary": summary,
        "runs": per_label,
    }
    write_results("sim_scale", figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
