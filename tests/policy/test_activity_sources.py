"""Activity sources on their own: the injected file, and /proc on this real machine."""

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
from bonjourgrid.policy.activity import (
    GLOB_REFRESH_S,
    machine_busy_seconds,
    proc_cpu_seconds,
    process_tree,
)

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


def test_the_process_tree_comes_from_the_kernels_children_lists(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    root = subprocess.Popen(["sh", "-c", "sleep 30 & sh -c 'sleep 30 & wait' & wait"])
    procs.append(root)
    deadline = time.monotonic() + 10
    while len(psutil.Process(root.pid).children(recursive=True)) < 3:
        assert time.monotonic() < deadline, "the tree did not start"
        time.sleep(0.02)
    expected = {root.pid} | {c.pid for c in psutil.Process(root.pid).children(recursive=True)}
    assert set(process_tree(root.pid)) == expected
    for c in psutil.Process(root.pid).children(recursive=True):
        c.kill()


def test_a_gone_grid_root_counts_no_cpu_rather_than_failing() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(OSError):
        process_tree(dead.pid)
    assert PsutilActivitySource(dead.pid, terminals=()).grid_cpu_seconds() == 0.0


def test_a_tasks_shell_keeps_the_cpu_of_the_commands_it_reaped(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    # The grid root's child (a task's shell) runs a burner, reaps it and sleeps: the burner's
    # CPU is in the shell's own counters, so it still counts as the grid's, not the owner's.
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    inner = f"{sys.executable} -c '{burn}'; sleep 30; true"
    root = subprocess.Popen(["sh", "-c", f'sh -c "{inner}"; true'])
    procs.append(root)
    deadline = time.monotonic() + 30
    while "sleep" not in {c.name() for c in psutil.Process(root.pid).children(recursive=True)}:
        assert time.monotonic() < deadline, "the burner did not finish"
        time.sleep(0.05)
    assert PsutilActivitySource(root.pid, terminals=()).grid_cpu_seconds() >= 0.55
    for c in psutil.Process(root.pid).children(recursive=True):
        c.kill()


def test_a_command_name_with_parentheses_and_spaces_does_not_skew_the_cpu_read(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    # A hostile task names itself to look like more /proc/<pid>/stat fields.
    odd = tmp_path / "x) R 1 1 1 99 (y"
    odd.symlink_to(sys.executable)
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    p = subprocess.Popen([str(odd), "-c", spin + "time.sleep(30)"])
    procs.append(p)
    deadline = time.monotonic() + 30
    while psutil.Process(p.pid).cpu_times().user + psutil.Process(p.pid).cpu_times().system < 0.3:
        assert time.monotonic() < deadline, "the spinner did not spin"
        time.sleep(0.05)
    t = psutil.Process(p.pid).cpu_times()
    assert abs(proc_cpu_seconds(p.pid) - (t.user + t.system)) < 0.05


def test_machine_busy_seconds_from_proc_stat_agrees_with_psutil() -> None:
    t = psutil.cpu_times()
    from_psutil = sum(t) - t.idle - t.iowait - t.guest - t.guest_nice
    assert abs(machine_busy_seconds() - from_psutil) < 1.0


def test_the_terminal_list_is_reused_then_expanded_again(tmp_path: Path) -> None:
    (tmp_path / "tty1").touch()
    source = PsutilActivitySource(terminals=(str(tmp_path / "tty*"),), use_x=False)
    assert source.input_idle(now=100.0) is not None
    (tmp_path / "tty2").touch()
    (tmp_path / "tty1").unlink()
    os.utime(tmp_path / "tty2", (time.time() - 500, time.time() - 500))
    assert source.input_idle(now=101.0) is None  # the list of 100.0: tty1, gone
    idle = source.input_idle(now=100.0 + GLOB_REFRESH_S)
    assert idle is not None and idle >= 499
