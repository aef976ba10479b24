"""How fast the owner comes first, per backend: owner activity -> the task's processes stopped.

On a virtual LAN (fast profile: the owner policy samples every 0.2 s), one volunteer runs one
long task of an app submitted from another host, on each backend in turn (embedded, condor,
boinc; a backend whose middleware is not installed is skipped). Each round writes ``busy`` to
the volunteer's owner-activity file and times until every process of the task is stopped
(``T`` in /proc), then ``idle`` and times until it runs again. What is timed is the path
policy -> backend -> middleware: SIGSTOP (embedded), the startd's policy (condor), the client's
run control (boinc).

    python bench/owner_delay.py [--quick] [--rounds N] [--backends condor,boinc]

Default 5 rounds per backend (``--quick``: 2). Figures go to bench/results/owner_delay.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable

import psutil
from _common import grid_lan, print_table, write_results

from bonjourgrid.ce_backends.boinc.client import boinc_executable
from bonjourgrid.ce_backends.condor.installation import find
from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid

MARK = "bjg-owner-bench"
TASK = f"i=0; while [ $i -lt 600 ]; do sleep 1; i=$((i+1)); done  # {MARK}"
SETTLE_S = 1.5
"""Pause between rounds: the policy's resume_after (0.5 s) and the middleware settle."""


def _available(backend: str) -> bool:
    if backend == "condor":
        return find() is not None
    if backend == "boinc":
        return boinc_executable() is not None
    return True


def _wait(cond: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(0.01)
    raise TimeoutError(f"not within {timeout} s")


def _find_task(hosts: list[Host], timeout: float) -> tuple[psutil.Process, Host]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if len(cmd) == 3 and cmd[1:] == ["-c", TASK]:  # the task's own shell
                for h in hosts:
                    if p.pid in h.pids():
                        return p, h
        time.sleep(0.1)
    raise TimeoutError("the task did not start")


def _stopped(p: psutil.Process) -> bool:
    try:
        family = [p, *p.children(recursive=True)]
    except psutil.Error:
        return False
    states = []
    for q in family:
        try:
            states.append(q.status())
        except psutil.Error:
            continue
    return bool(states) and all(s == psutil.STATUS_STOPPED for s in states)


def _set_owner(host: Host, word: str) -> None:
    (host.home / "state" / "owner-activity").write_text(word + "\n")


def measure(backend: str, rounds: int) -> dict[str, object]:
    with grid_lan(3, f"own{backend[:3]}") as grid:
        h0, volunteers = grid.lan.hosts[0], grid.lan.hosts[1:3]
        for h in volunteers:
            (h.home / "config").mkdir(parents=True, exist_ok=True)
            (h.home / "config" / "volunteer.toml").write_text(
                "[policy]\nmax_suspension = 3600\nresume_after = 0.5\n"
            )
        grid.join_all(volunteers, "--slots", "1")
        grid.wait_idle(h0, volunteers)
        return _rounds(grid, h0, volunteers, backend, rounds)


def _rounds(
    grid: Grid, h0: Host, volunteers: list[Host], backend: str, rounds: int
) -> dict[str, object]:
    app = h0.home / "owner-bench" / "app.json"
    app.parent.mkdir(parents=True, exist_ok=True)
    doc = {"name": "ownerbench", "tasks": [{"id": "long", "command": TASK, "timeout": 240}]}
    app.write_text(json.dumps(doc))
    proc = grid.popen_cli(
        h0, "submit", str(app), "--backend", backend,
        stdout=subprocess.DEVNULL, stderr=open(h0.home / "submit.err", "wb"),  # noqa: SIM115
    )  # fmt: skip
    suspend: list[float] = []
    resume: list[float] = []
    try:
        try:
            task, busy = _find_task(volunteers, timeout=120)
        except TimeoutError:
            raise SystemExit((h0.home / "submit.err").read_text()[-2000:]) from None
        time.sleep(SETTLE_S)
        for _ in range(rounds):
            _set_owner(busy, "busy")
            suspend.append(_wait(lambda: _stopped(task), 30))
            time.sleep(SETTLE_S)
            _set_owner(busy, "idle")
            resume.append(_wait(lambda: not _stopped(task), 30))
            time.sleep(SETTLE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return {
        "suspend_s": suspend,
        "resume_s": resume,
        "suspend_median_s": statistics.median(suspend),
        "suspend_max_s": max(suspend),
        "resume_median_s": statistics.median(resume),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds per backend")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--backends", default="condor,boinc")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    figures: dict[str, object] = {"rounds": rounds}
    rows = []
    for backend in args.backends.split(","):
        if not _available(backend):
            figures[backend] = "skipped: not installed"
            rows.append([backend, "skipped", "", ""])
            continue
        got = measure(backend, rounds)
        figures[backend] = got
        rows.append(
            [backend, got["suspend_median_s"], got["suspend_max_s"], got["resume_median_s"]]
        )
    print_table(
        f"owner activity -> task stopped, {rounds} rounds per backend (fast profile)",
        ["backend", "suspend median s", "suspend max s", "resume median s"],
        rows,
    )
    write_results("owner_delay", figures, quick=args.quick)


if __name__ == "__main__":
    main()
