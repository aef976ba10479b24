"""The same bag of tasks on each CE backend: embedded task farm, HTCondor, BOINC (if present).

T x ``sleep 0.5`` tasks on 4 volunteers (`bjgrid join --slots 1`) of a virtual LAN (fast
profile), submitted from a 5th host with `bjgrid submit --backend B`. For each backend:
makespan (submit start to its exit) and time to first task start (submit start to the earliest
start a task recorded: each task prints ``date +%s.%N`` first; every host shares this machine's
clock), printed as ratios to the embedded run of the same invocation. BOINC runs only when
``bonjourgrid/ce_backends/boinc/coordinator.py`` and a boinc-client exist; otherwise its line
says why not.

    python bench/backends.py [--quick] [--tasks T] [--backends embedded,condor,boinc]

Default T = 100 on every backend (``--quick``: 20 on embedded and HTCondor; BOINC alone takes
minutes). Figures go to bench/results/backends.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import time
from typing import Any

from _common import grid_lan, join_in_batches, print_table, ratio, write_app, write_results

from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid

HOSTS = 4
SLEEP_S = 0.5
BACKENDS = ("embedded", "condor", "boinc")
RUN_TIMEOUT_S = 900.0


def why_unavailable(backend: str) -> str:
    """'' when ``backend`` can run in this bench, else the reason (one line)."""
    if backend == "embedded":
        return ""
    if backend == "condor":
        from bonjourgrid.ce_backends.condor.installation import find

        return "" if find() is not None else "no HTCondor here (run scripts/setup-condor)"
    if backend == "boinc":
        if importlib.util.find_spec("bonjourgrid.ce_backends.boinc.coordinator") is None:
            return "bonjourgrid/ce_backends/boinc/coordinator.py does not exist yet"
        from bonjourgrid.ce_backends.boinc.client import boinc_executable

        return "" if boinc_executable() is not None else "no boinc-client installed"
    return f"unknown backend {backend!r}"


def run_bag(grid: Grid, user: Host, backend: str, n: int) -> dict[str, Any]:
    """Submit the bag on ``backend``; makespan, first task start, and what the run produced."""
    folder = user.home / f"bag-{backend}"
    cmd = f"date +%s.%N; sleep {SLEEP_S}"
    app = write_app(folder, f"bag-{backend}", [cmd] * n, workers=HOSTS)
    out = folder / "out"
    t0 = time.time()
    proc = grid.popen_cli(
        user, "submit", str(app), "--backend", backend, "--json", "--output", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"submit --backend {backend} exited {proc.returncode}: "
            f"{err.decode(errors='replace')[-1500:]}"
        )
    tasks = json.loads((out / "results.json").read_text())["tasks"]
    starts = []
    for t in tasks:
        with_time = (out / t["id"] / "stdout").read_text().split()
        if with_time:
            starts.append(float(with_time[0]))
    return {
        "tasks": n,
        "done": sum(1 for t in tasks if t["state"] == "done"),
        "makespan_s": wall,
        "first_start_s": min(starts) - t0 if starts else None,
        "last_start_s": max(starts) - t0 if starts else None,
        "workers_used": len({t["worker"] for t in tasks}),
        "mean_task_s": sum(float(t["seconds"]) for t in tasks) / len(tasks),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="20 tasks, embedded and condor (unless --backends)"
    )
    parser.add_argument("--tasks", type=int, help="tasks in the bag (overrides --quick)")
    parser.add_argument("--backends", help=f"comma-separated (default {','.join(BACKENDS)})")
    args = parser.parse_args(argv)
    n = args.tasks or (20 if args.quick else 100)
    backends = args.backends or ("embedded,condor" if args.quick else ",".join(BACKENDS))
    wanted = [b for b in backends.split(",") if b]
    if "embedded" not in wanted:
        wanted.insert(0, "embedded")  # the baseline of every ratio

    runs: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    with grid_lan(HOSTS + 1, "backends") as grid:
        *volunteers, user = grid.lan.hosts
        join_in_batches(grid, volunteers, "--slots", "1")
        for backend in wanted:
            why = why_unavailable(backend)
            if why:
                missing[backend] = why
                continue
            grid.wait_idle(user, volunteers, timeout=60)
            try:
                runs[backend] = run_bag(grid, user, backend, n)
            except Exception as e:
                if backend == "embedded":
                    raise
                missing[backend] = f"run failed: {e}"
                continue
            print(f"{backend}: {runs[backend]}", flush=True)

    base = runs["embedded"]
    rows = [
        (
            b,
            r["makespan_s"],
            ratio(r["makespan_s"], base["makespan_s"]),
            r["first_start_s"],
            ratio(r["first_start_s"], base["first_start_s"]),
            f"{r['done']}/{r['tasks']}",
        )
        for b, r in runs.items()
    ]
    ideal = n * SLEEP_S / HOSTS
    print_table(
        f"{n} x sleep {SLEEP_S} on {HOSTS} hosts (--slots 1, fast profile); ideal {ideal:g} s",
        ("backend", "makespan s", "ratio", "1st start s", "ratio", "done"),
        rows,
    )
    for b, why in missing.items():
        print(f"  {b}: not available: {why}")
    figures: dict[str, object] = {
        "hosts": HOSTS,
        "tasks": n,
        "sleep_s": SLEEP_S,
        "ideal_s": ideal,
        "runs": {
            b: {
                **r,
                "makespan_ratio": ratio(r["makespan_s"], base["makespan_s"]),
                "first_start_ratio": ratio(r["first_start_s"], base["first_start_s"]),
            }
            for b, r in runs.items()
        },
        "not_available": missing,
    }
    write_results("backends", figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
