"""Shared helpers of the benchmarks: the grid on a virtual LAN, apps, tables, the JSON output.

Benchmarks print figures next to a baseline measured in the same invocation, as ratios; they
assert nothing about wall-clock times (DESIGN.md, "Testing, in tiers"). Every grid runs on a
private virtual LAN (network namespaces on a bridge, link-local addresses): never on this
machine's real interfaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from bonjourgrid.testbed import Host, VirtualLan, available
from bonjourgrid.testbed.grid import Grid

RESULTS_DIR = Path(
    os.environ.get("BJGRID_BENCH_RESULTS") or Path(__file__).resolve().parent / "results"
)
"""Where figures go: ``bench/results/`` (git-ignored), or ``$BJGRID_BENCH_RESULTS`` (the smoke
tests point it at a temporary folder)."""
# How many `bjgrid join` start at once: each start costs ~0.5 s of CPU (interpreter, imports,
# zeroconf), so a 2-core box starting 32 at once would spend its time thrashing.
JOIN_BATCH = 4


def require_lan() -> None:
    """Exit with a clear message when namespaces cannot be made here (not root, no tools)."""
    ok, why = available()
    if not ok:
        sys.exit(f"this benchmark needs the virtual LAN test bed: {why}")


@contextlib.contextmanager
def grid_lan(n_hosts: int, name: str, *, profile: str = "fast") -> Iterator[Grid]:
    """A started ``n_hosts`` virtual LAN with a fresh grid key; everything torn down at exit."""
    require_lan()
    with (
        tempfile.TemporaryDirectory(prefix=f"bjgrid-bench-{name}-") as tmp,
        VirtualLan(n_hosts, base_dir=Path(tmp), name=name) as lan,
    ):
        yield Grid(lan, profile=profile)


def join_in_batches(grid: Grid, hosts: Sequence[Host], *args: str, batch: int = JOIN_BATCH) -> None:
    """Start `bjgrid join ARGS` on ``hosts``, ``batch`` at a time, each batch up before the next."""
    for i in range(0, len(hosts), batch):
        grid.join_all(hosts[i : i + batch], *args, timeout=60.0)


def write_app(
    folder: Path, name: str, commands: Sequence[str | list[str]], *, workers: int | None = None
) -> Path:
    """An app.json in ``folder`` with one task per command (ids ``t0``, ``t1``, ...; no retries).

    A string command runs under ``/bin/sh -c``, a list without a shell.
    """
    folder.mkdir(parents=True, exist_ok=True)
    app: dict[str, Any] = {
        "version": 1,
        "name": name,
        "tasks": [{"id": f"t{i}", "command": c, "retries": 0} for i, c in enumerate(commands)],
        "requirements": {"cpus": 1},
    }
    if workers is not None:
        app["workers"] = workers
    path = folder / "app.json"
    path.write_text(json.dumps(app, indent=1))
    return path


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or None when either is missing or the base is zero."""
    if value is None or base is None or base == 0:
        return None
    return value / base


def fmt(x: object, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:.0f}"
    return str(x)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain, aligned text table on stdout."""
    cells = [list(headers)] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for row in cells:
        padded = (
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        line = "  ".join(padded)
        print(f"  {line}".rstrip())
    sys.stdout.flush()


def machine() -> dict[str, object]:
    """Where the figures were measured."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": psutil.cpu_count(),
        "memory_mb": psutil.virtual_memory().total // 2**20,
    }


def write_results(name: str, figures: dict[str, object], *, quick: bool) -> Path:
    """Write ``RESULTS_DIR/<name>.json`` (``<name>-quick.json`` for a --quick run)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    doc = {
        "benchmark": name,
        "quick": quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "figures": figures,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nfigures written to {path}")
    return path
