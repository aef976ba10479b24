"""Task throughput of the embedded task farm on a virtual LAN of 8 volunteers.

(a) Makespan of T x ``sleep 0.2`` on 8 hosts (`bjgrid join --slots 1`), from `bjgrid submit`
    start to its exit, against the ideal T x 0.2 / 8.
(b) No-op tasks per second: T x ``true`` on the same 8 hosts, against
    ``xargs -P <cores> -n 1 true`` running T invocations on this machine, in the same run.

Both apps run from a 9th host (no daemon of its own: `submit` starts a private one).

    python bench/throughput.py [--quick] [--tasks T] [--hosts H]

Default T = 400 (``--quick``: 100), H = 8. Figures go to bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import time

import psutil
from _common import grid_lan, join_in_batches, print_table, ratio, write_app, write_results

from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid, reservations

SLEEP_S = 0.2


def submit(
    grid: Grid, user: Host, volunteers: list[Host], name: str, argv: list[str], n: int, workers: int
) -> dict[str, float]:
    """Run n x ``argv`` on the grid; wall seconds of `bjgrid submit` and of its phases."""
    folder = user.home / name
    app = write_app(folder, name, [argv] * n, workers=workers)
    before = {h.name: len(reservations(h)) for h in volunteers}
    busy0, vol0 = busy_cpu_s(), volunteers_cpu_s(grid)
    t0 = time.time()
    proc = grid.popen_cli(
        user, "submit", str(app), "--json", "--output", str(folder / "out"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = proc.communicate(timeout=600)
    wall = time.time() - t0
    busy, vol = busy_cpu_s() - busy0, volunteers_cpu_s(grid) - vol0
    if proc.returncode != 0:
        raise RuntimeError(
            f"submit exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
        )
    tasks = json.loads(out)["results"]["tasks"]
    done = sum(1 for t in tasks if t["state"] == "done")
    reserved = sorted(
        float(e["t"]) - t0
        for h in volunteers
        for e in reservations(h)[before[h.name] :]
        if e["event"] == "reserved"
    )
    return {
        "tasks": n,
        "done": done,
        "wall_s": wall,
        "first_worker_s": reserved[0] if reserved else float("nan"),
        "workers_used": len({t["worker"] for t in tasks}),
        "mean_task_s": sum(float(t["seconds"]) for t in tasks) / len(tasks),
        "cpu_s_machine": busy,
        "cpu_s_volunteers": vol,
        "cpu_ms_per_task": 1000 * busy / n,
        "cpu_ms_per_task_volunteers": 1000 * vol / n,
    }


def busy_cpu_s() -> float:
    """CPU seconds this whole machine has spent busy (all cores, everything but idle/iowait)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def volunteers_cpu_s(grid: Grid) -> float:
    """CPU seconds of the `bjgrid join` daemons so far, their reaped tasks included."""
    total = 0.0
    for proc in grid.daemons.values():
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(proc.pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def xargs_rate(n: int, repeats: int = 3) -> dict[str, float]:
    """``xargs -P <cores> -n 1 true`` over n arguments (median of ``repeats``): seconds, rate."""
    cores = os.cpu_count() or 1
    data = "".join(f"{i}\n" for i in range(n)).encode()
    walls = []
    for _ in range(repeats):
        t0 = time.monotonic()
        subprocess.run(["xargs", "-P", str(cores), "-n", "1", "true"], input=data, check=True)
        walls.append(time.monotonic() - t0)
    wall = statistics.median(walls)
    return {"tasks": n, "parallel": cores, "wall_s": wall, "tasks_per_s": n / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 tasks instead of 400")
    parser.add_argument("--tasks", type=int, help="tasks per app (overrides --quick)")
    parser.add_argument("--hosts", type=int, default=8, help="volunteers (default 8)")
    args = parser.parse_args(argv)
    n = args.tasks or (100 if args.quick else 400)
    hosts = args.hosts

    with grid_lan(hosts + 1, "tput") as grid:
        *volunteers, user = grid.lan.hosts
        join_in_batches(grid, volunteers, "--slots", "1")
        grid.wait_idle(user, volunteers, timeout=60)
        sleep = submit(grid, user, volunteers, "sleeps", ["sleep", str(SLEEP_S)], n, hosts)
        print(f"sleep app: {sleep}", flush=True)
        grid.wait_idle(user, volunteers, timeout=60)
        noop = submit(grid, user, volunteers, "noops", ["true"], n, hosts)
        print(f"no-op app: {noop}", flush=True)
    xargs = xargs_rate(n)
    noop["tasks_per_s"] = n / noop["wall_s"]
    # The rate once the farm runs: from the first worker's reservation to the end.
    noop["steady_tasks_per_s"] = n / (noop["wall_s"] - noop["first_worker_s"])

    ideal = n * SLEEP_S / hosts
    print_table(
        f"(a) makespan of {n} x sleep {SLEEP_S} on {hosts} hosts (--slots 1)",
        ("", "seconds", "ratio"),
        [
            ("bjgrid submit", sleep["wall_s"], ratio(sleep["wall_s"], ideal)),
            ("ideal n*0.2/hosts", ideal, 1.0),
            ("mean task (worker)", sleep["mean_task_s"], ratio(sleep["mean_task_s"], SLEEP_S)),
        ],
    )
    print_table(
        f"(b) {n} no-op tasks (`true`)",
        ("", "seconds", "tasks/s", "ratio"),
        [
            (
                f"bjgrid, {hosts} hosts",
                noop["wall_s"],
                noop["tasks_per_s"],
                ratio(noop["tasks_per_s"], xargs["tasks_per_s"]),
            ),
            (
                "bjgrid, after 1st worker",
                noop["wall_s"] - noop["first_worker_s"],
                noop["steady_tasks_per_s"],
                ratio(noop["steady_tasks_per_s"], xargs["tasks_per_s"]),
            ),
            (f"xargs -P {xargs['parallel']} -n 1 true", xargs["wall_s"], xargs["tasks_per_s"], 1.0),
        ],
    )
    print(
        f"  CPU per no-op task: {noop['cpu_ms_per_task']:.1f} ms on this machine, of which "
        f"{noop['cpu_ms_per_task_volunteers']:.1f} ms in the volunteers (daemons + tasks); "
        f"the rest is mostly the submitting host's coordinator"
    )
    figures: dict[str, object] = {
        "hosts": hosts,
        "tasks": n,
        "makespan": {**sleep, "ideal_s": ideal, "ratio": ratio(sleep["wall_s"], ideal)},
        "noop": {**noop, "ratio_vs_xargs": ratio(noop["tasks_per_s"], xargs["tasks_per_s"])},
        "xargs": xargs,
    }
    write_results("throughput", figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
