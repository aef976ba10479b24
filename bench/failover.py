"""How fast the grid recovers, on a virtual LAN (issue 4).

Two figures, median and max over ``--runs`` (default 10), beside the configured heartbeat
interval and suspicion timeout (the baseline: the detector cannot be faster than these):

* **coordinator kill -9 -> dispatching again**: a submitter (private daemon) coordinates an
  app with ``replicas: 2`` on 6 volunteers; its host is killed; the figure is the time until
  the new coordinator starts a task (the first ``start`` entry in its journal after the kill);
* **worker kill -9 -> task requeued and restarted**: the host running a 3 s task is killed
  (4 tasks, 6 volunteers: an idle machine is there to take it); the figure is the time until
  that task's next attempt starts elsewhere (loss detected, requeued, a volunteer recruited
  again and staged).

Journal entries carry no clock reading (issue 13), so both figures are the time at which this
script *sees* the entry in a host's journal (read-only SQLite, polled every ``POLL_S``): they
overstate the real figure by at most one poll and one read.

Usage: ``python bench/failover.py [--quick] [--runs N] [--profile fast|lan]`` (``--quick``:
1 run). Figures go to bench/results/failover.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from _common import grid_lan, join_in_batches, print_table, ratio, write_results

from bonjourgrid.config import Config
from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid
from bonjourgrid.testbed.journal_view import journal_rows

VOLUNTEERS = 6
POLL_S = 0.05
IN_FLIGHT_S = 0.25
"""After a kill, entries the dead coordinator sent just before it still reach the replicas'
journals for a moment; a start seen in this window is not the new coordinator's (which cannot
start anything before ``suspect_after``, 1.5 s or more)."""


def sweep(folder: Path, name: str, n: int, sleep: float, replicas: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    app = {
        "version": 1,
        "name": name,
        "replicas": replicas,
        "sweeps": [
            {
                "template": {"id": "t-{i}", "command": f"sleep {sleep}", "retries": 0},
                "params": {"i": list(range(n))},
            }
        ],
    }
    path = folder / "app.json"
    path.write_text(json.dumps(app))
    return path


def app_id(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert line.startswith("app "), line
    return line.split()[1]


def start_keys(hosts: list[Host], app: str) -> set[tuple[str, int]]:
    """Every (task, attempt) started in ``app`` according to any of ``hosts``' journals."""
    return {
        (e["task"], e["attempt"])
        for h in hosts
        for e in journal_rows(h, app)[1]
        if e["k"] == "start"
    }


def coordinator_kill(grid: Grid, submitter: Host, vols: list[Host], run: int, tmp: Path) -> float:
    grid.wait_idle(vols[0], vols, timeout=60)
    app_json = sweep(tmp / f"c{run}", f"ckill-{run}", 120, 0.2, replicas=2)
    proc = grid.popen_cli(
        submitter, "submit", str(app_json), "--output", str(tmp / f"c{run}-out"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = app_id(proc)
    time.sleep(1.5)
    killed = time.monotonic()
    submitter.kill9()
    time.sleep(IN_FLIGHT_S)
    before = start_keys(vols, app)
    deadline = killed + 60
    while time.monotonic() < deadline:
        if start_keys(vols, app) - before:
            return time.monotonic() - killed
        time.sleep(POLL_S)
    raise TimeoutError(f"run {run}: no task started after the coordinator's kill")


def worker_kill(grid: Grid, submitter: Host, vols: list[Host], run: int, tmp: Path) -> float:
    grid.wait_idle(vols[0], vols, timeout=60)
    # Fewer tasks than volunteers: the requeued task finds an idle machine at once.
    app_json = sweep(tmp / f"w{run}", f"wkill-{run}", len(vols) - 2, 3.0, replicas=0)
    proc = grid.popen_cli(
        submitter, "submit", str(app_json), "--output", str(tmp / f"w{run}-out"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = app_id(proc)
    names = {h.name: h for h in vols}
    victim: Host | None = None
    task = ""
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        for e in journal_rows(submitter, app)[1]:
            if e["k"] == "start" and e["host"] in names:
                victim, task = names[e["host"]], e["task"]
                break
        time.sleep(0.05)
    assert victim is not None, "no task started"
    time.sleep(0.5)
    killed = time.monotonic()
    victim.kill9()
    grid.daemons.pop(victim.name, None)
    try:
        while time.monotonic() < killed + 60:
            if any(
                e["k"] == "start" and e["task"] == task and e["attempt"] > 1
                for e in journal_rows(submitter, app)[1]
            ):
                return time.monotonic() - killed
            time.sleep(POLL_S)
        raise TimeoutError(f"run {run}: task {task} was not restarted")
    finally:
        proc.wait(timeout=120)
        grid.join(victim, "--slots", "1")
        grid.wait_daemon(victim)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 run instead of 10")
    ap.add_argument("--runs", type=int, help="kills of each kind (default 10; --quick: 1)")
    ap.add_argument("--profile", choices=("fast", "lan"), default="fast")
    args = ap.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 10)
    cfg = Config.fast() if args.profile == "fast" else Config.lan()
    figures: dict[str, Any] = {
        "profile": args.profile,
        "heartbeat_interval_s": cfg.heartbeat_interval,
        "suspect_after_s": cfg.suspect_after,
    }
    with grid_lan(VOLUNTEERS + 1, "failover", profile=args.profile) as grid:
        hosts = grid.lan.hosts
        submitter, vols = hosts[0], hosts[1:]
        join_in_batches(grid, vols, "--slots", "1")
        tmp = grid.lan.base_dir
        coord = [coordinator_kill(grid, submitter, vols, r, tmp) for r in range(args.runs)]
        work = [worker_kill(grid, submitter, vols, r, tmp) for r in range(args.runs)]
    rows = []
    for name, xs in (
        ("coordinator kill -9 -> dispatching", coord),
        ("worker kill -9 -> task restarted", work),
    ):
        med, mx = statistics.median(xs), max(xs)
        figures[name] = {"median_s": med, "max_s": mx, "runs": xs}
        rows.append([name, f"{med:.2f}", f"{mx:.2f}", f"x{ratio(med, cfg.suspect_after):.2f}"])
    print_table(
        f"failover ({args.profile}: heartbeat {cfg.heartbeat_interval:g} s, "
        f"suspect after {cfg.suspect_after:g} s), {args.runs} runs",
        ["what", "median s", "max s", "median / suspect_after"],
        rows,
    )
    write_results("failover", figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
