"""Cost of the task sandbox, per task: this tree next to an earlier revision, in one run.

One task through ``run_task`` (ce_backends/embedded/sandbox.py) as a volunteer's embedded
worker runs it: a fresh directory with the app's files, the task's process (a slot account,
namespaces and a cgroup per attempt when root; bubblewrap when not root and it is installed),
its end, every process of it killed, the outputs collected. The task itself is ``true`` with
one declared output, so what is timed is the sandbox. Variants, interleaved round by round so
that each sees the same machine:

- **now**: this tree's sandbox;
- **before**: the sandbox of an earlier revision (``--before REV``, default the last commit
  before the hardening of issue 12), extracted with ``git archive`` into a temporary folder
  and run by its own interpreter process, the same way;
- **spawn**: the bare cost of starting and reaping the same command with asyncio, no sandbox
  (the floor any sandbox adds to).

    python bench/sandbox.py [--quick] [--tasks N] [--before REV] [--no-cgroups]

``--no-cgroups``: both trees with ``SandboxConfig(cgroups=False)``, the path of a volunteer with
no usable cgroup hierarchy (the virtual LAN's daemons here): every process of a task is found
and killed through its slot account (docs/performance.md).

Default 200 tasks per variant (``--quick``: 20). Figures go to bench/results/sandbox.json.
No virtual LAN: the sandbox is local to a volunteer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import print_table, ratio, write_results

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "cdfd007"
"""The last commit before issue 12's sandbox work (cgroups, O_NOFOLLOW collection, caps)."""
ROUND = 10
"""Tasks per variant per round."""

WORKER = r"""
import asyncio, json, sys, tempfile, time
from pathlib import Path

mode, n, cg = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"

async def spawn_once() -> None:
    p = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", "true > out.txt", cwd=tmp,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await p.wait()

async def main() -> list[float]:
    times = []
    if mode == "spawn":
        for _ in range(n):
            t0 = time.perf_counter(); await spawn_once(); times.append(time.perf_counter() - t0)
        return times
    from bonjourgrid.ce_backends.embedded.sandbox import SandboxConfig, TaskRun, run_task
    config = SandboxConfig(uid_base=65200) if cg else SandboxConfig(uid_base=65200, cgroups=False)
    files, scratch = Path(tmp, "files"), Path(tmp, "tasks")
    files.mkdir(); scratch.mkdir()
    files.chmod(0o755); scratch.chmod(0o711); Path(tmp).chmod(0o711)
    (files / "input.txt").write_text("x" * 4096)
    for i in range(n):
        run = TaskRun(app="bench", task=f"t{i}", attempt=1,
                      argv=("/bin/sh", "-c", "true > out.txt"), env={}, timeout=60.0,
                      outputs=("out.txt",), inputs=b"", inputs_sha256="")
        t0 = time.perf_counter()
        out = await run_task(run, app_files=files, scratch=scratch, config=config)
        times.append(time.perf_counter() - t0)
        if out.exit_code != 0 or out.error:
            raise SystemExit(f"task failed: {out.exit_code} {out.error}")
    return times

with tempfile.TemporaryDirectory(prefix="bjgrid-bench-sandbox-", dir="/var/tmp") as tmp:
    print(json.dumps(asyncio.run(main())))
"""


def extract(rev: str, into: Path) -> Path:
    """The ``bonjourgrid`` package of revision ``rev``, under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "bonjourgrid"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def batch(mode: str, n: int, tree: Path, cgroups: bool = True) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-c", WORKER, mode, str(n), "1" if cgroups else "0"]
    r = subprocess.run(argv, env=env, capture_output=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"{mode} ({tree}) failed:\n{r.stderr.decode(errors='replace')[-3000:]}")
    times = json.loads(r.stdout.decode().splitlines()[-1])
    assert isinstance(times, list)
    return [float(t) for t in times]


def run(n: int, before: str, cgroups: bool = True) -> dict[str, object]:
    times: dict[str, list[float]] = {"spawn": [], "before": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="bjgrid-bench-rev-") as tmp:
        old_tree = extract(before, Path(tmp))
        trees = {"spawn": ROOT, "before": old_tree, "now": ROOT}
        for done in range(0, n, ROUND):
            k = min(ROUND, n - done)
            for name, tree in trees.items():
                mode = "spawn" if name == "spawn" else "task"
                times[name].extend(batch(mode, k, tree, cgroups))
    base = statistics.median(times["before"])
    rows: list[list[object]] = []
    figures: dict[str, object] = {
        "tasks": n,
        "before": before,
        "root": os.geteuid() == 0,
        "cgroups": cgroups,
    }
    for name, ts in times.items():
        med, p90 = statistics.median(ts), statistics.quantiles(ts, n=10)[-1]
        rows.append([name, med * 1e3, p90 * 1e3, ratio(med, base)])
        figures[name] = {"median_ms": med * 1e3, "p90_ms": p90 * 1e3, "ratio": ratio(med, base)}
    print_table(
        f"one task through the sandbox ({n} tasks per variant; before = {before}"
        f"{'' if cgroups else '; no cgroups'})",
        ["variant", "median ms", "p90 ms", "ratio vs before"],
        rows,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 tasks per variant")
    parser.add_argument("--tasks", type=int, default=0, help="tasks per variant (default 200)")
    parser.add_argument("--before", default=BEFORE, help=f"earlier revision (default {BEFORE})")
    parser.add_argument(
        "--no-cgroups", action="store_true", help="no cgroup per task: the slot-account sweeps"
    )
    args = parser.parse_args()
    n = args.tasks or (20 if args.quick else 200)
    write_results("sandbox", run(n, args.before, not args.no_cgroups), quick=args.quick)


if __name__ == "__main__":
    main()
