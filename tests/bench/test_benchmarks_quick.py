"""Every benchmark's ``--quick`` form runs to the end and writes its figures, so none rots.

A smoke run, not a measurement: each benchmark runs as ``python bench/<name>.py --quick`` (the
way a person runs it) with its figures redirected to a temporary folder, and the test checks
only that it exited 0 and that ``<name>-quick.json`` holds the figures it promises. Timings
are printed by the benchmark and asserted nowhere (DESIGN.md, "Testing, in tiers").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
QUICK_TIMEOUT_S = 300.0
"""Far above any quick run (seconds to a minute on a loaded 2-core box): only a hang hits it."""

FIGURES: dict[str, tuple[str, ...]] = {
    "durability": ("tasks", "old", "durable", "files only", "journal only"),
    "sandbox": ("tasks", "spawn", "now"),
    "sim_scale": ("nodes", "apps", "seeds", "summary", "runs"),
    "footprint": ("window_s", "join", "baseline", "dependencies", "ratios"),
    "throughput": ("hosts", "tasks", "makespan", "noop", "dask", "xargs"),
    "ce_build": ("sizes",),
    "failover": ("suspect_after_s", "coordinator kill -9 -> dispatching"),
    "backends": ("tasks", "runs", "not_available"),
}
"""Figures each known benchmark must write; one added later is run all the same (any figures)."""

SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def needs_lan(name: str) -> bool:
    """A benchmark that builds a grid needs the virtual LAN (``_common.grid_lan``)."""
    return "grid_lan" in (BENCH / f"{name}.py").read_text()


def test_the_known_benchmarks_are_all_there() -> None:
    assert set(FIGURES) <= set(SCRIPTS)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.vlan] if needs_lan(n) else []) for n in SCRIPTS]
)
def test_the_quick_form_runs_and_writes_its_figures(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "BJGRID_BENCH_RESULTS": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--quick"],
        cwd=ROOT, env=env, capture_output=True, timeout=QUICK_TIMEOUT_S,
    )  # fmt: skip
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, f"{out[-3000:]}\n{r.stderr.decode(errors='replace')[-3000:]}"
    doc = json.loads((tmp_path / f"{name}-quick.json").read_text())
    assert doc["benchmark"] == name and doc["quick"] is True
    assert doc["figures"], "no figures"
    missing = [k for k in FIGURES.get(name, ()) if k not in doc["figures"]]
    assert not missing, f"figures lack {missing}: {sorted(doc['figures'])}"
    print(out[-2500:])  # the tables, for whoever runs with -s
