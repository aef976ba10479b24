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

# name -> (needs the virtual LAN, keys its figures must have)
BENCHMARKS: dict[str, tuple[bool, tuple[str, ...]]] = {
    "durability": (False, ("tasks", "old", "durable", "files only", "journal only")),
    "sandbox": (False, ("tasks", "spawn", "now")),
    "sim_scale": (False, ("nodes", "apps", "seeds", "summary", "runs")),
    "footprint": (True, ("window_s", "join", "baseline", "ratios")),
    "throughput": (True, ("hosts", "tasks", "makespan", "noop", "dask", "xargs")),
    "ce_build": (True, ("sizes",)),
    "failover": (True, ("suspect_after_s", "coordinator kill -9 -> dispatching")),
    "backends": (True, ("tasks", "runs", "not_available")),
}


def test_every_benchmark_in_bench_has_a_smoke_test() -> None:
    scripts = {p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(BENCHMARKS)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[pytest.mark.vlan] if lan else [])
        for n, (lan, _) in BENCHMARKS.items()
    ],
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
    missing = [k for k in BENCHMARKS[name][1] if k not in doc["figures"]]
    assert not missing, f"figures lack {missing}: {sorted(doc['figures'])}"
    print(out[-2500:])  # the tables, for whoever runs with -s
