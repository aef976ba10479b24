"""Cost of a durable result commit, per task, next to the old non-durable path (same run).

One task's commit on the coordinator as worker_events.py does it: unpack the attempt's files
(``stdout``, ``stderr``, declared outputs) beside their place, promote them, commit its
``Finished`` entry in the journal. Two paths, interleaved so that both see the same disk and
load:

- **durable** (today): files and folders fsynced, one atomic rename (exchange) and the parent
  fsynced, SQLite ``synchronous=FULL`` (the WAL fsynced at each commit);
- **old**: no fsync, two renames, ``synchronous=NORMAL``.

Also the durable path's parts (files only, journal only), to see where the time goes.

    python bench/durability.py [--quick] [--tasks N] [--files F] [--kib K] [--dir PATH]

Default 300 tasks (``--quick``: 60) of 3 files of 4 KiB, in a temporary folder on the state
dir's filesystem (``--dir`` to choose). Figures go to bench/results/durability.json. No
virtual LAN: the commit path is local to the coordinator.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import print_table, ratio, write_results

from bonjourgrid.coordinator import result_store
from bonjourgrid.coordinator.result_store import ResultStore
from bonjourgrid.faulttolerance import entries as je
from bonjourgrid.faulttolerance.journal import Journal

Commit = Callable[[int], None]


def outputs_blob(files: int, kib: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name in ["stdout", "stderr", *(f"out-{i}.txt" for i in range(files - 2))]:
            data = os.urandom(kib * 1024)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_path(root: Path, *, files_durable: bool, journal_sync: str, exchange: bool) -> Commit:
    """A commit function over its own result store and journal under ``root``."""
    store = ResultStore(root / "apps" / "a1", durable=files_durable)
    journal = Journal(root / "journal.sqlite", synchronous=journal_sync)
    journal.add_app(
        app="a1", spec={"name": "bench", "tasks": []}, bundle=b"", digest="d", user="u",
        term=1, role="running", coordinator="n", coordinator_host="h",
    )  # fmt: skip
    blob = outputs_blob(ARGS.files, ARGS.kib)

    def commit(i: int) -> None:
        saved = result_store._exchange_works
        result_store._exchange_works = exchange and saved
        try:
            task = f"t-{i % 50}"  # tasks come back more than once: promotion replaces
            store.stage(task, i, blob)
            store.promote(task, i)
        finally:
            result_store._exchange_works = saved
        entry = je.Finished(task, i, 0, 0.1, time.monotonic(), 1, worker="w", host="h")
        journal.append("a1", i + 1, je.encode(entry))

    return commit


def run(quick: bool) -> dict[str, object]:
    n = ARGS.tasks or (60 if quick else 300)
    base = Path(ARGS.dir) if ARGS.dir else None
    with tempfile.TemporaryDirectory(prefix="bjgrid-bench-durability-", dir=base) as tmp:
        paths = {
            "old": make_path(Path(tmp, "old"), files_durable=False, journal_sync="NORMAL",
                             exchange=False),
            "durable": make_path(Path(tmp, "durable"), files_durable=True,
                                 journal_sync="FULL", exchange=True),
            "files only": make_path(Path(tmp, "files"), files_durable=True,
                                    journal_sync="NORMAL", exchange=True),
            "journal only": make_path(Path(tmp, "journal"), files_durable=False,
                                      journal_sync="FULL", exchange=True),
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in paths}
        for i in range(n):  # interleaved: every path sees the same moment of the disk
            for name, commit in paths.items():
                t0 = time.perf_counter()
                commit(i)
                times[name].append(time.perf_counter() - t0)
    old = statistics.median(times["old"])
    rows = []
    figures: dict[str, object] = {"tasks": n, "files": ARGS.files, "kib": ARGS.kib}
    for name, ts in times.items():
        med, p90 = statistics.median(ts), statistics.quantiles(ts, n=10)[-1]
        rows.append([name, med * 1e3, p90 * 1e3, (med - old) * 1e3, ratio(med, old)])
        figures[name] = {"median_ms": med * 1e3, "p90_ms": p90 * 1e3, "ratio": ratio(med, old)}
    print_table(
        f"one result commit ({n} tasks, {ARGS.files} files of {ARGS.kib} KiB each)",
        ["path", "median ms", "p90 ms", "extra ms vs old", "ratio vs old"],
        rows,
    )
    return figures


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=0)
    parser.add_argument("--files", type=int, default=3, help="files per result (>= 2)")
    parser.add_argument("--kib", type=int, default=4, help="KiB per file")
    parser.add_argument("--dir", default="", help="where to write (default: the temp dir)")
    ARGS = parser.parse_args()
    if ARGS.files < 2:
        sys.exit("--files must be at least 2 (stdout and stderr)")
    write_results("durability", run(ARGS.quick), quick=ARGS.quick)


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
