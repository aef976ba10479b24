"""A slot account's leftovers never meet the next task that runs as that uid.

The sandbox sweeps a leased uid (kill(-1) as that uid) before a task only when the lease's
lock file does not say ``clean``: the previous holder's final sweep succeeded. These tests
are the attacker's side: a process of a crashed holder, and an escaped double fork.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.ce_backends.embedded import isolation
from bonjourgrid.ce_backends.embedded.sandbox import SandboxConfig, TaskRun, run_task

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root volunteer: slot accounts")

UID = 65430


@pytest.fixture
def scratch() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="bjgrid-leftovers-", dir="/var/tmp"))
    base.chmod(0o711)
    (base / "tasks").mkdir(mode=0o711)
    (base / "files").mkdir(mode=0o755)
    yield base
    isolation.kill_all_of(UID)
    shutil.rmtree(base, ignore_errors=True)


def config(scratch: Path) -> SandboxConfig:
    # One account only, no cgroup: every task of these tests is UID, swept by uid.
    return SandboxConfig(uid_base=UID, uid_count=1, lock_dir=str(scratch / "locks"), cgroups=False)


def run(scratch: Path, argv: list[str]) -> tuple[int | None, str]:
    t = TaskRun(
        app="leftovers", task="t", attempt=1, argv=tuple(argv), env={}, timeout=30.0,
        outputs=(), inputs=b"", inputs_sha256="",
    )  # fmt: skip
    outcome = asyncio.run(
        run_task(t, app_files=scratch / "files", scratch=scratch / "tasks", config=config(scratch))
    )
    return outcome.exit_code, outcome.error


def processes_of(uid: int) -> list[str]:
    """Live processes of ``uid`` (a killed one may take a moment to go: waited up to 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for p in psutil.process_iter(["uids", "status", "cmdline"]):
            uids = p.info["uids"]
            if uids and uid in (uids.real, uids.effective) and p.info["status"] != "zombie":
                found.append(f"{p.pid} {p.info['status']} {p.info['cmdline']}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def lock_file(scratch: Path) -> bytes:
    return (scratch / "locks" / f"{UID}.lock").read_bytes()


def test_a_lease_is_marked_in_use_at_once_and_clean_only_when_released_empty(
    scratch: Path,
) -> None:
    locks = str(scratch / "locks")
    lease = isolation.lease_account(UID, 1, locks)
    assert not lease.empty  # a new lock file says nothing: sweep
    assert lock_file(scratch) == b"dirty\n"
    lease.release()  # nothing swept: still dirty
    assert lock_file(scratch) == b"dirty\n"
    lease = isolation.lease_account(UID, 1, locks)
    lease.empty = True
    lease.release()
    assert lock_file(scratch) == b"clean\n"
    lease = isolation.lease_account(UID, 1, locks)
    assert lease.empty
    assert lock_file(scratch) == b"dirty\n"  # a crash from here on leaves the next to sweep
    lease.release()


def test_a_crashed_holders_process_is_killed_before_the_next_task(scratch: Path) -> None:
    locks = str(scratch / "locks")
    lease = isolation.lease_account(UID, 1, locks)
    lease.empty = True
    lease.release()  # clean, then a holder takes it and dies with a process running
    lease = isolation.lease_account(UID, 1, locks)
    leftover = subprocess.Popen(
        ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "sleep", "60"]
    )
    try:
        time.sleep(0.2)
        assert lease._fd is not None
        os.close(lease._fd)  # the holder is killed -9: the kernel drops its flock, nothing else
        lease._fd = None
        assert lock_file(scratch) == b"dirty\n"
        # The task itself (same uid) finds no process of the crashed holder's still alive.
        # (A killed process may need a moment to die; a zombie is dead: its parent is us.)
        probe = (
            f"for i in $(seq 40); do s=$(cut -d' ' -f3 /proc/{leftover.pid}/stat 2>/dev/null);"
            ' [ -z "$s" ] || [ "$s" = Z ] && exit 0; sleep 0.05; done; exit 3'
        )
        assert run(scratch, ["sh", "-c", probe]) == (0, "")
        assert leftover.wait(timeout=10) == -9
    finally:
        leftover.kill()
        leftover.wait()


def test_an_escaped_double_fork_is_gone_when_the_task_ends(scratch: Path) -> None:
    escape = "setsid sh -c 'sleep 60 </dev/null >/dev/null 2>&1 &' &"
    assert run(scratch, ["sh", "-c", escape]) == (0, "")
    assert processes_of(UID) == []
    assert lock_file(scratch) == b"clean\n"
    assert run(scratch, ["true"]) == (0, "")  # the next lease skips the start sweep
    assert processes_of(UID) == []
