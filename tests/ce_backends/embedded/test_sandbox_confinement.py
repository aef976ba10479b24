"""The task sandbox confines real processes: files, other slots, outputs, memory, network.

Every test runs real tasks through ``run_task`` (no daemon, no network traffic). Tests that need
slot accounts or namespaces need root and skip otherwise. Slot accounts here use a uid range of
their own (TEST_UID_BASE) so the sweep of a slot account never touches a daemon's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.app.bundle import unpack_files
from bonjourgrid.ce_backends.embedded import isolation
from bonjourgrid.ce_backends.embedded.sandbox import (
    SandboxConfig,
    TaskControl,
    TaskOutcome,
    TaskRun,
    run_task,
)

TEST_UID_BASE = 65100
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="slot accounts and namespaces need root")
CONFIG = SandboxConfig(uid_base=TEST_UID_BASE)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A scratch folder every slot account can reach (pytest's own tmp is private to root),
    so a refusal proves the slot separation, not an unreachable parent. Not under /tmp: tasks
    get a private /tmp, where this folder would not even exist."""
    base = Path(tempfile.mkdtemp(prefix="bjgrid-sandbox-test-", dir="/var/tmp"))
    base.chmod(0o711)
    (base / "tasks").mkdir(mode=0o711)
    (base / "files").mkdir(mode=0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def task(argv: list[str] | str, *, name: str = "t", **kw: object) -> TaskRun:
    args = ("/bin/sh", "-c", argv) if isinstance(argv, str) else tuple(argv)
    fields: dict[str, object] = {
        "app": "app1",
        "task": name,
        "attempt": 1,
        "argv": args,
        "env": {},
        "timeout": 30.0,
        "outputs": (),
        "inputs": b"",
        "inputs_sha256": "",
    }
    fields.update(kw)
    return TaskRun(**fields)  # type: ignore[arg-type]


async def _run(run: TaskRun, scratch: Path, **kw: object) -> TaskOutcome:
    kw.setdefault("config", CONFIG)
    return await run_task(
        run,
        app_files=scratch / "files",
        scratch=scratch / "tasks",
        **kw,  # type: ignore[arg-type]
    )


def execute(run: TaskRun, scratch: Path, **kw: object) -> TaskOutcome:
    return asyncio.run(_run(run, scratch, **kw))


def files_of(outcome: TaskOutcome, where: Path) -> dict[str, str]:
    names = unpack_files(outcome.outputs, where)
    return {n: (where / n).read_text(errors="replace") for n in names}


# --- files -------------------------------------------------------------------------------


@needs_root
def test_a_task_cannot_write_outside_its_directory(scratch: Path, tmp_path: Path) -> None:
    target = scratch / "evil.txt"  # the folder above the sandbox, owned by root, 0711
    outcome = execute(task(f"echo pwned > {target}"), scratch)
    assert outcome.exit_code not in (0, None)
    assert not target.exists()
    assert "Permission denied" in files_of(outcome, tmp_path)["stderr"]


@needs_root
def test_a_task_write_to_tmp_stays_in_its_private_tmp(scratch: Path, tmp_path: Path) -> None:
    if not isolation.probe().mount_namespace:
        pytest.skip("no mount namespaces here")
    target = Path("/tmp") / f"bjgrid-escape-{secrets.token_hex(4)}"
    outcome = execute(task(f"echo pwned > {target} && pwd"), scratch)
    assert outcome.exit_code == 0, outcome.error
    assert not target.exists()
    assert files_of(outcome, tmp_path)["stdout"].strip() == isolation.TASK_MOUNT


@needs_root
def test_a_task_cannot_read_another_slots_directory(scratch: Path, tmp_path: Path) -> None:
    (scratch / "tasks" / "public.txt").write_text("readable\n")
    (scratch / "tasks" / "public.txt").chmod(0o644)
    victim_dir = scratch / "tasks" / "victim.1"

    async def both() -> TaskOutcome:
        victim = asyncio.ensure_future(
            _run(task("echo s3cret > secret.txt; sleep 20", name="victim"), scratch, slot=0)
        )
        for _ in range(100):
            if (victim_dir / "secret.txt").exists():
                break
            await asyncio.sleep(0.05)
        thief_cmd = f"cat {scratch}/tasks/public.txt && cat {victim_dir}/secret.txt"
        thief = await _run(task(thief_cmd, name="thief"), scratch, slot=1)
        victim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await victim
        return thief

    thief = asyncio.run(both())
    out = files_of(thief, tmp_path)
    assert out["stdout"] == "readable\n"  # the parent is reachable: only the slot separates
    assert "s3cret" not in out["stdout"]
    assert "Permission denied" in out["stderr"]
    assert thief.exit_code not in (0, None)


@needs_root
def test_each_slot_runs_as_its_own_account(scratch: Path, tmp_path: Path) -> None:
    outcome = execute(task("id -u; id -g; id -G"), scratch, slot=3)
    uid = str(TEST_UID_BASE + 3)
    assert files_of(outcome, tmp_path)["stdout"].split() == [uid, uid, uid]


# --- outputs -----------------------------------------------------------------------------


def test_an_output_with_dotdot_is_refused_with_the_reason(scratch: Path, tmp_path: Path) -> None:
    outcome = execute(task("true", outputs=("../../etc/passwd",)), scratch)
    assert "output refused" in outcome.error and "'..'" in outcome.error
    assert set(files_of(outcome, tmp_path)) == {"stdout", "stderr"}


def test_an_output_linking_outside_is_refused(scratch: Path, tmp_path: Path) -> None:
    run = task("ln -s /etc/passwd out.txt && echo ok > fine.txt", outputs=("out.txt", "fine.txt"))
    outcome = execute(run, scratch)
    assert outcome.exit_code == 0
    assert (
        outcome.error
        == "output refused: out.txt: symbolic link resolves outside the task's sandbox"
    )
    got = files_of(outcome, tmp_path)
    assert set(got) == {"stdout", "stderr"}
    assert "root:" not in "".join(got.values())
    assert "[bjgrid] output refused" in got["stderr"]


def test_an_output_that_is_a_link_inside_is_refused_too(scratch: Path, tmp_path: Path) -> None:
    # Outputs are read without following links (a link can be swapped while it is read).
    outcome = execute(task("echo hi > a.txt && ln -s a.txt b.txt", outputs=("b.txt",)), scratch)
    assert outcome.error == "output refused: b.txt: a symbolic link (links are not collected)"
    assert set(files_of(outcome, tmp_path)) == {"stdout", "stderr"}


# --- limits ------------------------------------------------------------------------------

_GROW = (
    "import time\n"
    "hog = []\n"
    "while True:\n"
    "    hog.append(bytearray(8 * 1024 * 1024))\n"  # zero-filled: resident at once
    "    hog[-1][::4096] = b'x' * len(hog[-1][::4096])\n"
    "    time.sleep(0.02)\n"
)


def test_a_growing_memory_hog_is_killed_and_reported(scratch: Path, tmp_path: Path) -> None:
    run = task(["python3", "-c", _GROW], memory_mb=64)
    outcome = execute(run, scratch)
    assert outcome.exit_code is None
    assert outcome.error == "memory limit exceeded (64 MB)"
    assert "memory limit exceeded (64 MB)" in files_of(outcome, tmp_path)["stderr"]


def test_one_huge_allocation_is_stopped_and_reported(scratch: Path) -> None:
    run = task(["python3", "-c", "x = bytearray(8 * 1024**3)"], memory_mb=64)
    outcome = execute(run, scratch)
    assert outcome.exit_code is None
    assert outcome.error == "memory limit exceeded (64 MB)"


def test_the_default_memory_cap_applies_without_a_declared_need(scratch: Path) -> None:
    config = SandboxConfig(uid_base=TEST_UID_BASE, memory_mb=48)
    outcome = execute(task(["python3", "-c", _GROW]), scratch, config=config)
    assert outcome.error == "memory limit exceeded (48 MB)"


def test_a_file_beyond_the_size_limit_is_reported(scratch: Path) -> None:
    config = SandboxConfig(uid_base=TEST_UID_BASE, file_size_mb=1)
    outcome = execute(task("head -c 3000000 /dev/zero > big"), scratch, config=config)
    assert outcome.error == "file size limit exceeded (1 MB)"


def test_a_timeout_kills_the_task(scratch: Path) -> None:
    outcome = execute(task(["sleep", "30"], timeout=0.5), scratch)
    assert outcome.exit_code is None
    assert outcome.error == "timed out after 0.5 s"


# --- environment, network, processes -----------------------------------------------------


def test_the_environment_is_scrubbed(
    scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BJGRID_TEST_SECRET", "leak")
    outcome = execute(task("env", env={"MINE": "1"}), scratch)
    env = dict(line.split("=", 1) for line in files_of(outcome, tmp_path)["stdout"].splitlines())
    assert "BJGRID_TEST_SECRET" not in env
    assert env["MINE"] == "1" and env["BJGRID_TASK"] == "t" and env["BJGRID_ATTEMPT"] == "1"
    assert env["HOME"] == env["TMPDIR"]
    assert set(env) <= {"PATH", "HOME", "LANG", "TMPDIR", "MINE", "PWD", "SHLVL", "_"} | {
        "BJGRID_APP",
        "BJGRID_TASK",
        "BJGRID_ATTEMPT",
    }


_IFACES = "import socket; print(sorted(n for _, n in socket.if_nameindex()))"


@needs_root
def test_no_network_unless_the_task_asks(scratch: Path, tmp_path: Path) -> None:
    if not isolation.probe().network_namespace:
        pytest.skip("no network namespaces here")
    closed = execute(task(["python3", "-c", _IFACES]), scratch)
    assert files_of(closed, tmp_path / "a")["stdout"].strip() == "['lo']"
    opened = execute(task(["python3", "-c", _IFACES], network=True), scratch)
    here = sorted(n for _, n in socket.if_nameindex())
    assert files_of(opened, tmp_path / "b")["stdout"].strip() == str(here)


def test_the_whole_process_group_dies_at_the_end(scratch: Path, tmp_path: Path) -> None:
    outcome = execute(task("sleep 60 & echo $!"), scratch)
    pid = int(files_of(outcome, tmp_path)["stdout"])
    assert _gone(pid)


@needs_root
def test_a_process_escaping_its_group_dies_with_the_slot(scratch: Path, tmp_path: Path) -> None:
    run = task(
        [
            "python3",
            "-c",
            "import os, subprocess; print(subprocess.Popen(['setsid', 'sleep', '60']).pid)",
        ]
    )
    outcome = execute(run, scratch)
    pid = int(files_of(outcome, tmp_path)["stdout"])
    assert _gone(pid)


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


# --- suspension --------------------------------------------------------------------------


def test_suspend_stops_the_group_and_pauses_the_timeout(scratch: Path, tmp_path: Path) -> None:
    control = TaskControl()

    async def scenario() -> tuple[TaskOutcome, str]:
        running = asyncio.ensure_future(
            _run(task("sleep 1; echo done", timeout=2.0), scratch, control=control)
        )
        while control.pgid is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        control.suspend()
        await asyncio.sleep(0.1)
        status = psutil.Process(control.pgid).status()
        await asyncio.sleep(2.0)  # longer than the timeout: it must not count
        control.resume()
        return await running, status

    outcome, status = asyncio.run(scenario())
    assert status == psutil.STATUS_STOPPED
    assert outcome.error == "" and outcome.exit_code == 0
    assert files_of(outcome, tmp_path)["stdout"] == "done\n"
    assert outcome.seconds < 2.0


@needs_root
def test_tasks_of_two_workers_in_the_same_slot_get_distinct_accounts(
    scratch: Path, tmp_path: Path
) -> None:
    # Two daemons of one host (--local workers, virtual-LAN hosts) both run their slot 0:
    # the host-wide lease gives them different accounts, and neither kills the other's task.
    async def both() -> list[TaskOutcome]:
        return list(
            await asyncio.gather(
                _run(task("id -u; sleep 1", name="one"), scratch, slot=0),
                _run(task("sleep 0.3; id -u", name="two"), scratch, slot=0),
            )
        )

    one, two = asyncio.run(both())
    assert one.error == "" and two.error == "" and one.exit_code == two.exit_code == 0
    uids = {files_of(o, tmp_path / o.outputs_sha256[:8])["stdout"].strip() for o in (one, two)}
    assert len(uids) == 2
