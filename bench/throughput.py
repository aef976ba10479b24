"""Task throughput of the embedded task farm on a virtual LAN of H volunteers, beside Dask.

(a) Makespan of T x ``sleep 0.2`` on H hosts (`bjgrid join --slots 1`), from `bjgrid submit`
    start to its exit, against the ideal T x 0.2 / H.
(b) No-op tasks per second: T x ``true`` on the same H hosts, against
    ``xargs -P <cores> -n 1 true`` running T invocations on this machine, in the same run.

Both apps run from one more host (no daemon of its own: `submit` starts a private one). In the
same run, the same two bags run on Dask, what a user would pick instead on one machine: a
``distributed.LocalCluster`` with one single-thread worker process per volunteer, on loopback,
each task running its command in a subprocess; timed from the first submit to the last result
(the cluster's start is reported apart). Dask is in the ``dev`` extra.

    python bench/throughput.py [--quick] [--tasks T] [--hosts H] [--py-spy DIR]

``--py-spy DIR`` (py-spy installed) records, during the no-op app, the submitting host's
coordinator (`bjgrid submit`) and one volunteer's daemon with its tasks, as flame graphs
``DIR/coordinator.svg`` and ``DIR/volunteer.svg`` plus raw collapsed stacks (``*.txt``);
docs/performance.md reads them.

Default T = 400, H = 8 (``--quick``: T = 60, H = 4). Figures go to bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _common import (
    grid_lan,
    join_in_batches,
    print_table,
    ratio,
    write_app,
    write_results,
)

from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid, reservations
from bonjourgrid.testbed.submit_output import submit_json

SLEEP_S = 0.2


def py_spy(pid: int, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` and its children (the tasks), idle frames left out."""
    return subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record", "--pid", str(pid), "--subprocesses", "--rate", "250", "--nonblocking",
            "--format", fmt, "--output", str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def submit(
    grid: Grid,
    user: Host,
    volunteers: list[Host],
    name: str,
    argv: list[str],
    n: int,
    workers: int,
    profile_dir: Path | None = None,
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
    spies: list[subprocess.Popen[bytes]] = []
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        vol_pid = grid.daemons[volunteers[0].name].pid
        for who, pid in (("coordinator", proc.pid), ("volunteer", vol_pid)):
            for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
                spies.append(py_spy(pid, profile_dir / f"{who}.{ext}", fmt))
    out, err = proc.communicate(timeout=600)
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    for spy in spies:
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(timeout=30)
    wall = time.time() - t0
    busy, vol = busy_cpu_s() - busy0, volunteers_cpu_s(grid) - vol0
    if proc.returncode != 0:
        raise RuntimeError(
            f"submit exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
        )
    tasks = submit_json(out)["results"]["tasks"]
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


def run_command(cmd: str) -> int:
    """One Dask task: the bag's command in a subprocess, as bjgrid's worker runs it."""
    return subprocess.run(cmd, shell=True, check=False).returncode


def dask_bags(bags: dict[str, list[str]], workers: int) -> dict[str, dict[str, float]]:
    """Each bag on one LocalCluster of ``workers`` single-thread processes, on loopback.

    Per bag: seconds from the first submit to the last result, tasks/s and failures; under
    ``cluster``: the seconds the cluster took to start (not part of any bag's time).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        sys.exit("Dask is not installed: pip install 'dask[distributed]' (the dev extra has it)")
    figures: dict[str, dict[str, float]] = {}
    t0 = time.monotonic()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",  # loopback only: no traffic leaves the machine
            dashboard_address=None,
            # A worker whose heartbeat meets the closing scheduler logs a traceback: noise.
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(workers)
        figures["cluster"] = {"workers": workers, "start_s": time.monotonic() - t0}
        for name, commands in bags.items():
            t1 = time.monotonic()
            codes = client.gather(client.map(run_command, commands, pure=False))
            wall = time.monotonic() - t1
            figures[name] = {
                "tasks": len(commands),
                "wall_s": wall,
                "tasks_per_s": len(commands) / wall,
                "failed": sum(1 for c in codes if c != 0),
            }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 tasks on 4 hosts")
    parser.add_argument("--tasks", type=int, help="tasks per app (default 400; --quick: 60)")
    parser.add_argument("--hosts", type=int, help="volunteers (default 8; --quick: 4)")
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="profile the no-op app into DIR (py-spy)"
    )
    args = parser.parse_args(argv)
    n = args.tasks or (60 if args.quick else 400)
    hosts = args.hosts or (4 if args.quick else 8)

    with grid_lan(hosts + 1, "tput") as grid:
        *volunteers, user = grid.lan.hosts
        join_in_batches(grid, volunteers, "--slots", "1")
        grid.wait_idle(user, volunteers, timeout=60)
        sleep = submit(grid, user, volunteers, "sleeps", ["sleep", str(SLEEP_S)], n, hosts)
        print(f"sleep app: {sleep}", flush=True)
        grid.wait_idle(user, volunteers, timeout=60)
        noop = submit(grid, user, volunteers, "noops", ["true"], n, hosts, args.py_spy)
        print(f"no-op app: {noop}", flush=True)
    dask = dask_bags({"sleeps": [f"sleep {SLEEP_S}"] * n, "noops": ["true"] * n}, hosts)
    print(f"dask: {dask}", flush=True)
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
            (
                f"dask, {hosts} workers",
                dask["sleeps"]["wall_s"],
                ratio(dask["sleeps"]["wall_s"], ideal),
            ),
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
            (
                f"dask, {hosts} workers",
                dask["noops"]["wall_s"],
                dask["noops"]["tasks_per_s"],
                ratio(dask["noops"]["tasks_per_s"], xargs["tasks_per_s"]),
            ),
            (f"xargs -P {xargs['parallel']} -n 1 true", xargs["wall_s"], xargs["tasks_per_s"], 1.0),
        ],
    )
    print(
        f"  dask: LocalCluster of {hosts} single-thread worker processes on 127.0.0.1, each task"
        f" `subprocess.run(cmd, shell=True)`; its start ({dask['cluster']['start_s']:.1f} s) is"
        " not counted"
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
        "dask": {
            **dask,
            "makespan_ratio": ratio(dask["sleeps"]["wall_s"], ideal),
            "noop_ratio_vs_xargs": ratio(dask["noops"]["tasks_per_s"], xargs["tasks_per_s"]),
        },
        "xargs": xargs,
    }
    write_results("throughput", figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
