"""Building a computing element: time from `bjgrid submit` start to N workers recruited.

A virtual LAN of N volunteers (`bjgrid join --slots 1`) and one submitting host (no daemon of
its own: `submit` starts a private one). The app is N x ``sleep 2`` with ``--workers N``. The
N-th worker is recruited at the latest ``reserved`` event in the volunteers' own reservation
logs (wall clock), minus the wall-clock start of `bjgrid submit`.

Anchors measured in the same invocation, on the same submitting host, with the same N idle
volunteers: a fresh python-zeroconf browse resolving the N ``_bjg-idle`` services (in-process
time, and the whole process including interpreter start), and `bjgrid status --json`.

    python bench/ce_build.py [--quick] [--sizes 8,32] [--repeats R]

Default N = 8 and 32 (``--quick``: N = 8, one repeat). Figures go to bench/results/ce_build.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import (
    grid_lan,
    join_in_batches,
    print_table,
    ratio,
    write_app,
    write_results,
)

from bonjourgrid.discovery.names import IDLE_TYPE
from bonjourgrid.testbed import Host
from bonjourgrid.testbed.grid import Grid, reservations
from bonjourgrid.testbed.submit_output import submit_json

# A fresh browse resolving `n` services of `type` on `address` only; prints one JSON object.
BROWSE_SCRIPT = r"""
import asyncio, json, sys, time
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

address, n, type_ = sys.argv[1], int(sys.argv[2]), sys.argv[3]

async def main():
    t0 = time.monotonic()
    azc = AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
    found, pending, done = {}, set(), asyncio.Event()

    async def resolve(name):
        info = AsyncServiceInfo(type_, name)
        if await info.async_request(azc.zeroconf, 3000) and info.parsed_addresses():
            found[name] = time.monotonic() - t0
            if len(found) >= n:
                done.set()

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added:
            task = asyncio.ensure_future(resolve(name))
            pending.add(task)
            task.add_done_callback(pending.discard)

    browser = AsyncServiceBrowser(azc.zeroconf, [type_], handlers=[on_change])
    try:
        await asyncio.wait_for(done.wait(), 10)
    except asyncio.TimeoutError:
        pass
    seconds = time.monotonic() - t0
    await browser.async_cancel()
    await azc.async_close()
    print(json.dumps({"resolved": len(found), "seconds": seconds}))

asyncio.run(main())
"""


def browse(user: Host, n: int) -> dict[str, float]:
    """One fresh browse from ``user``: in-process seconds, whole-process seconds, count resolved."""
    t0 = time.monotonic()
    r = user.run([sys.executable, "-c", BROWSE_SCRIPT, user.address, str(n), IDLE_TYPE], timeout=30)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"browse failed: {r.stderr.decode(errors='replace')[-2000:]}")
    out = json.loads(r.stdout)
    return {"browse_s": out["seconds"], "process_s": wall, "resolved": out["resolved"]}


def status_time(grid: Grid, user: Host, n: int) -> tuple[float, int]:
    """Seconds of one `bjgrid status --json` on ``user`` and how many idle machines it listed."""
    t0 = time.monotonic()
    rows = grid.status(user, timeout=5.0)
    return time.monotonic() - t0, sum(1 for r in rows if r["state"] == "idle" and r["reachable"])


def recruit(grid: Grid, volunteers: list[Host], user: Host, n: int, run: int) -> dict[str, Any]:
    """One `bjgrid submit` of n x sleep 2 with --workers n; recruitment times from the logs."""
    app = write_app(user.home / f"ce{run}", f"ce{n}-{run}", ["sleep 2"] * n, workers=n)
    before = {h.name: len(reservations(h)) for h in volunteers}
    t0 = time.time()
    proc = grid.popen_cli(
        user, "submit", str(app), "--workers", str(n), "--json",
        "--output", str(user.home / f"out{run}"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120 + 2 * n)
    ended = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"submit exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}"
        )
    reserved = sorted(
        float(e["t"]) - t0
        for h in volunteers
        for e in reservations(h)[before[h.name] :]
        if e["event"] == "reserved"
    )
    workers = {t["worker"] for t in submit_json(out)["results"]["tasks"]} if out else set()
    return {
        "recruited": len(reserved),
        "first_s": reserved[0] if reserved else None,
        "all_s": reserved[-1] if len(reserved) >= n else None,
        "submit_s": ended,
        "distinct_workers": len(workers),
    }


def bench_size(n: int, repeats: int) -> dict[str, Any]:
    """Every figure for one LAN of n volunteers + 1 submitter."""
    with grid_lan(n + 1, f"ce{n}") as grid:
        *volunteers, user = grid.lan.hosts
        t0 = time.monotonic()
        join_in_batches(grid, volunteers, "--slots", "1")
        grid.wait_idle(user, volunteers, timeout=60 + n)
        print(f"N={n}: {n} volunteers up and idle in {time.monotonic() - t0:.1f} s", flush=True)
        runs: list[dict[str, Any]] = []
        browses: list[dict[str, float]] = []
        statuses: list[float] = []
        for run in range(repeats):
            if run:
                grid.wait_idle(user, volunteers, timeout=60)
            browses.append(browse(user, n))
            s, idle = status_time(grid, user, n)
            statuses.append(s)
            if idle < n:
                print(f"  warning: status listed {idle}/{n} idle", flush=True)
            runs.append(recruit(grid, volunteers, user, n, run))
            print(f"  run {run}: {runs[-1]}", flush=True)
    all_s = [float(r["all_s"]) for r in runs if r["all_s"] is not None]
    return {
        "n": n,
        "repeats": repeats,
        "recruit_all_s": statistics.median(all_s) if all_s else None,
        "recruit_first_s": statistics.median(float(r["first_s"]) for r in runs),
        "browse_s": statistics.median(b["browse_s"] for b in browses),
        "browse_process_s": statistics.median(b["process_s"] for b in browses),
        "browse_resolved": min(int(b["resolved"]) for b in browses),
        "status_s": statistics.median(statuses),
        "runs": runs,
        "browses": browses,
        "statuses": statuses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 8 only, one repeat")
    parser.add_argument("--sizes", help="comma-separated N (default 8,32; --quick: 8)")
    parser.add_argument("--repeats", type=int, help="submits per N (default 3; --quick: 1)")
    args = parser.parse_args(argv)
    sizes = (
        [int(x) for x in args.sizes.split(",")] if args.sizes else ([8] if args.quick else [8, 32])
    )
    repeats = args.repeats or (1 if args.quick else 3)

    results = [bench_size(n, repeats) for n in sizes]
    rows: list[tuple[object, ...]] = []
    for r in results:
        all_s = r["recruit_all_s"]
        rows.append(
            (
                r["n"],
                all_s,
                r["recruit_first_s"],
                r["browse_s"],
                r["browse_process_s"],
                r["status_s"],
                ratio(all_s, r["browse_s"]),
                ratio(all_s, r["browse_process_s"]),
                ratio(all_s, r["status_s"]),
            )
        )
    print_table(
        f"submit start -> N workers recruited (median of {repeats}; seconds)",
        (
            "N",
            "recruit N",
            "first",
            "browse",
            "browse+py",
            "status",
            "x browse",
            "x browse+py",
            "x status",
        ),
        rows,
    )
    print(
        "  browse: fresh python-zeroconf browse resolving N idle services (in-process);"
        " browse+py: the same, whole process; status: `bjgrid status --json`"
    )
    if any(r["browse_resolved"] != r["n"] for r in results):
        print(
            "  warning: a browse resolved fewer than N services:",
            {r["n"]: r["browse_resolved"] for r in results},
        )
    write_results("ce_build", {"sizes": results}, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
