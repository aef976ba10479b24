"""Processes a crashed daemon's backends left running are stopped at the next start."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil

from bonjourgrid.ce_backends import leftovers


def _family(tmp_path: Path) -> subprocess.Popen[bytes]:
    # A session of its own, with a child: like condor_master and its daemons.
    return subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)


def test_a_recorded_process_and_its_children_are_stopped_and_the_directory_removed(
    tmp_path: Path,
) -> None:
    proc = _family(tmp_path)
    try:
        owned = tmp_path / "apps" / "a1" / "ce" / "head"
        leftovers.record(owned, proc.pid)
        deadline = time.monotonic() + 5
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.02)
        child = psutil.Process(proc.pid).children()[0]
        assert leftovers.reap(tmp_path / "apps") == [proc.pid]
        assert proc.wait(timeout=5) is not None
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        assert not owned.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    proc = _family(tmp_path)
    try:
        owned = tmp_path / "work" / "a1"
        owned.mkdir(parents=True)
        started = psutil.Process(proc.pid).create_time()
        (owned / leftovers.PIDS).write_text(json.dumps({"pid": proc.pid, "started": started - 60}))
        assert leftovers.reap(tmp_path / "work") == []
        assert proc.poll() is None  # another process now holds that PID: not ours to stop
        assert not owned.exists()
    finally:
        proc.kill()
        proc.wait()


def test_an_unreadable_record_does_not_stop_the_start(tmp_path: Path) -> None:
    owned = tmp_path / "apps" / "a1" / "ce"
    owned.mkdir(parents=True)
    (owned / leftovers.PIDS).write_text("not json\n")
    assert leftovers.reap(tmp_path / "apps") == []
    assert leftovers.reap(tmp_path / "missing") == []
