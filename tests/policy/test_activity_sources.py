"""Activity sources on their own: the injected file, and psutil on this real machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.policy import Activity, FileActivitySource, PsutilActivitySource
from bonjourgrid.policy.activity import machine_busy_seconds

SPIN = "import time\nt = time.time()\nwhile time.time() - t < {secs}: pass\n"


@pytest.mark.parametrize(
    ("content", "busy"),
    [(None, False), ("", False), ("idle\n", False), ("IDLE", False), ("busy\n", True), ("?", True)],
)
def test_the_file_source_reads_busy_or_idle(
    tmp_path: Path, content: str | None, busy: bool
) -> None:
    path = tmp_path / "owner-activity"
    if content is not None:
        path.write_text(content)
    assert FileActivitySource(path).sample(0.0) == Activity(busy=busy)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_a_busy_owner_process_shows_as_owner_load(procs: list[subprocess.Popen[bytes]]) -> None:
    grid = subprocess.Popen(["sleep", "30"])  # an idle grid: everything else is the owner's
    procs.append(grid)
    source = PsutilActivitySource(grid.pid, terminals=())
    source.sample(time.monotonic())
    procs.append(subprocess.Popen([sys.executable, "-c", SPIN.format(secs=1.5)]))
    time.sleep(1.0)
    assert source.sample(time.monotonic()).owner_load >= 0.7


def test_the_grids_own_processes_do_not_count(procs: list[subprocess.Popen[bytes]]) -> None:
    # A grid root whose child burns 0.6 s of CPU, exits and is reaped; the root then sleeps.
    # CPU time, not wall time: the figures hold however loaded the machine is.
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    grid = subprocess.Popen(["sh", "-c", f"{sys.executable} -c '{burn}'; exec sleep 30"])
    procs.append(grid)
    source = PsutilActivitySource(grid.pid, terminals=())
    t0, busy0, grid0 = time.monotonic(), machine_busy_seconds(), source.grid_cpu_seconds()
    source.sample(t0)
    deadline = time.monotonic() + 30
    while psutil.Process(grid.pid).name() != "sleep":  # the child is done and reaped
        assert time.monotonic() < deadline, "the burner did not finish"
        time.sleep(0.05)
    t1 = time.monotonic()
    sample = source.sample(t1)
    busy1, grid1 = machine_busy_seconds(), source.grid_cpu_seconds()
    grid_used = grid1 - grid0
    assert grid_used >= 0.55  # the reaped child's CPU still counts as the grid's
    machine_load = (busy1 - busy0) / (t1 - t0)
    assert sample.owner_load <= machine_load - grid_used / (t1 - t0) + 0.25


def test_terminal_input_shows_as_input_idleness() -> None:
    master, slave = os.openpty()
    try:
        dev = os.ttyname(slave)
        st = os.stat(dev)
        os.utime(dev, (time.time() - 1000, st.st_mtime))
        source = PsutilActivitySource(terminals=(dev,), use_x=False)
        before = source.input_idle()
        assert before is not None and before >= 999
        os.write(master, b"typed\n")
        os.read(slave, 100)
        after = source.input_idle()
        assert after is not None and after < 10  # the tty layer stamps in 8 s steps
    finally:
        os.close(master)
        os.close(slave)


def test_no_terminal_means_input_idleness_unknown() -> None:
    source = PsutilActivitySource(terminals=("/nonexistent/tty*",), use_x=False)
    assert source.input_idle() is None
