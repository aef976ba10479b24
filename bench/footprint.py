"""Footprint of an idle volunteer: RSS and CPU share of `bjgrid join` next to a sleeping Python.

A 2-host virtual LAN (real mDNS between two idle volunteers). On host h1, `bjgrid join` and the
baseline ``python -c 'import time; time.sleep(S)'`` start together and are watched over the same
window with psutil: RSS at the end, CPU seconds / wall seconds, both over the whole run (start-up
included) and over the idle steady state (from the daemon being up to the end). A third process
sleeps after importing what any daemon of ours must load (asyncio, zeroconf, psutil, sqlite3; the
curve code of the control channel is loaded at the first handshake, which an idle volunteer
never makes): the RSS floor of this design. The issue's
goals for an idle daemon (35 MB, 0.05 % of a CPU) are printed beside the figures.

    python bench/footprint.py [--quick] [--seconds S] [--profile lan|fast]

Default 30 s (``--quick``: 10 s). Figures go to bench/results/footprint.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass

import psutil
from _common import fmt, grid_lan, print_table, ratio, write_results

from bonjourgrid.testbed.grid import Grid

# The baseline sleeps longer than the window, so it is alive when its RSS is read.
BASELINE_MARGIN_S = 60
DEPENDENCIES = (
    "asyncio",
    "zeroconf.asyncio",
    "psutil",
    "sqlite3",
)
"""What a daemon cannot run without: the floor of its RSS."""
GOAL_RSS_MB = 35.0
GOAL_IDLE_CPU_PCT = 0.05
"""Issue 15's goals for an idle `bjgrid join`."""


@dataclass
class Sample:
    """One process tree's CPU seconds and RSS at one instant."""

    wall: float
    cpu_s: float
    rss_mb: float


def sample(proc: psutil.Process) -> Sample:
    """CPU seconds and RSS (MB) of ``proc`` and its children."""
    now = time.monotonic()
    procs = [proc]
    with contextlib.suppress(psutil.NoSuchProcess):
        procs += proc.children(recursive=True)
    cpu = rss = 0.0
    for p in procs:
        try:
            cpu += cpu_seconds(p)
            rss += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return Sample(now, cpu, rss / 2**20)


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU seconds of ``proc``'s live threads from schedstat (ns), psutil's ticks as fallback.

    An idle daemon uses a few ms per 10 s: the 10 ms clock ticks of ``cpu_times()`` would
    round that to 0 or 10 ms.
    """
    total_ns = 0
    try:
        for task in os.scandir(f"/proc/{proc.pid}/task"):
            with open(f"{task.path}/schedstat") as f:
                total_ns += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        t = proc.cpu_times()
        return float(t.user + t.system)
    return total_ns / 1e9


def measure(grid: Grid, window: float) -> dict[str, dict[str, float]]:
    """Run `bjgrid join` and the baseline on h1 side by side; their figures by name."""
    h1, h2 = grid.lan.hosts
    grid.join(h2, "--slots", "1")  # the peer, so h1's mDNS stack has someone to talk to
    sleeper_s = int(window) + BASELINE_MARGIN_S
    t0 = time.monotonic()
    procs = {
        "bjgrid join": psutil.Process(grid.join(h1, "--slots", "1").pid),
        "python sleep": psutil.Process(
            h1.popen([sys.executable, "-c", f"import time; time.sleep({sleeper_s})"]).pid
        ),
        "python + deps": psutil.Process(
            h1.popen(
                [
                    sys.executable,
                    "-c",
                    f"import time, {', '.join(DEPENDENCIES)}; time.sleep({sleeper_s})",
                ]
            ).pid
        ),
    }
    grid.wait_daemon(h1, timeout=30)
    grid.wait_daemon(h2, timeout=30)
    # Steady state starts once h1 is up and has seen its peer (first browse over).
    grid.wait_idle(h2, [h1])
    grid.wait_idle(h1, [h2])
    up = {name: sample(p) for name, p in procs.items()}
    time.sleep(max(0.0, window - (time.monotonic() - t0)))
    end = {name: sample(p) for name, p in procs.items()}
    for name, p in procs.items():
        if not p.is_running():
            raise RuntimeError(f"{name} died during the measurement")
    figures: dict[str, dict[str, float]] = {}
    for name in procs:
        whole = end[name].wall - t0
        idle = end[name].wall - up[name].wall
        figures[name] = {
            "rss_mb": end[name].rss_mb,
            "cpu_s": end[name].cpu_s,
            "wall_s": whole,
            "cpu_pct": 100 * end[name].cpu_s / whole,
            "idle_cpu_s": end[name].cpu_s - up[name].cpu_s,
            "idle_wall_s": idle,
            "idle_cpu_pct": 100 * (end[name].cpu_s - up[name].cpu_s) / idle if idle > 0 else 0.0,
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s instead of 30 s")
    parser.add_argument("--seconds", type=float, help="measurement window (overrides --quick)")
    parser.add_argument(
        "--profile",
        default="lan",
        choices=("lan", "fast"),
        help="the daemon's timing profile (default: lan, what users run)",
    )
    args = parser.parse_args(argv)
    window = args.seconds or (10.0 if args.quick else 30.0)

    with grid_lan(2, "foot", profile=args.profile) as grid:
        fig = measure(grid, window)
    join, base, deps = fig["bjgrid join"], fig["python sleep"], fig["python + deps"]
    rows: list[tuple[object, ...]] = [
        (name, f["rss_mb"], f["cpu_s"], f["cpu_pct"], f["idle_cpu_s"] * 1000, f["idle_cpu_pct"])
        for name, f in fig.items()
    ]
    rows.append(
        (
            "ratio join/baseline",
            ratio(join["rss_mb"], base["rss_mb"]),
            ratio(join["cpu_s"], base["cpu_s"]),
            ratio(join["cpu_pct"], base["cpu_pct"]),
            ratio(join["idle_cpu_s"], base["idle_cpu_s"]),
            ratio(join["idle_cpu_pct"], base["idle_cpu_pct"]),
        )
    )
    rows.append(("ratio join/deps", ratio(join["rss_mb"], deps["rss_mb"]), None, None, None, None))
    print_table(
        f"idle footprint over {fmt(join['wall_s'])} s (profile {args.profile}; idle = last "
        f"{fmt(join['idle_wall_s'])} s, daemon up)",
        ("process", "RSS MB", "CPU s", "CPU %", "idle CPU ms", "idle CPU %"),
        rows,
    )
    print(
        f"  extra RSS of the volunteer: {join['rss_mb'] - base['rss_mb']:.1f} MB over a bare"
        f" Python, {join['rss_mb'] - deps['rss_mb']:.1f} MB over one with the dependencies"
    )
    print(
        f"  goals: RSS {join['rss_mb']:.1f} / {GOAL_RSS_MB:g} MB ="
        f" x{join['rss_mb'] / GOAL_RSS_MB:.2f}; idle CPU {join['idle_cpu_pct']:.4f} /"
        f" {GOAL_IDLE_CPU_PCT:g} % = x{join['idle_cpu_pct'] / GOAL_IDLE_CPU_PCT:.2f}"
    )
    figures: dict[str, object] = {
        "window_s": window,
        "profile": args.profile,
        "join": join,
        "baseline": base,
        "dependencies": deps,
        "goals": {"rss_mb": GOAL_RSS_MB, "idle_cpu_pct": GOAL_IDLE_CPU_PCT},
        "ratios": {
            "rss": ratio(join["rss_mb"], base["rss_mb"]),
            "cpu_pct": ratio(join["cpu_pct"], base["cpu_pct"]),
            "idle_cpu_pct": ratio(join["idle_cpu_pct"], base["idle_cpu_pct"]),
            "rss_vs_dependencies": ratio(join["rss_mb"], deps["rss_mb"]),
            "rss_vs_goal": join["rss_mb"] / GOAL_RSS_MB,
            "idle_cpu_vs_goal": join["idle_cpu_pct"] / GOAL_IDLE_CPU_PCT,
        },
    }
    write_results("footprint", figures, quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
