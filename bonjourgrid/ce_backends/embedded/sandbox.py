"""Run one task attempt in a fresh private directory and pack what it produced.

What a task gets: its own directory holding the app's files and its predecessors' declared
outputs; a scrubbed environment (PATH, HOME=its directory, LANG, TMPDIR, the app's ``env`` and
``BJGRID_*`` ids); the lowest CPU priority (nice 19) and the idle I/O class, so the owner comes
first and the grid's heartbeats stay timely; its own process group, which is killed entirely
when the task ends or times out. What comes back: ``stdout``, ``stderr`` and the declared
outputs that resolve inside the directory (a symlink or path pointing elsewhere is refused).

Not isolated yet (the owner-policy/sandbox issue): tasks run as the daemon's user, with no
rlimits, mount or network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bonjourgrid.app.bundle import pack_files, sha256_hex, unpack_files

log = logging.getLogger(__name__)

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class TaskRun:
    app: str
    task: str
    attempt: int
    argv: tuple[str, ...]
    env: dict[str, str]
    timeout: float | None
    outputs: tuple[str, ...]
    inputs: bytes
    inputs_sha256: str


@dataclass(frozen=True)
class TaskOutcome:
    exit_code: int | None
    seconds: float
    error: str
    outputs: bytes
    outputs_sha256: str


def _lower_priority() -> None:  # runs in the child between fork and exec
    os.nice(19)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def run_task(run: TaskRun, *, app_files: Path, scratch: Path) -> TaskOutcome:
    """Run ``run`` and return its outcome. Never raises for a task's own failure."""
    taskdir = scratch / f"{run.task}.{run.attempt}"
    if taskdir.exists():
        shutil.rmtree(taskdir)
    taskdir.mkdir(parents=True)
    logs = scratch / f"{run.task}.{run.attempt}.logs"
    logs.mkdir(exist_ok=True)
    try:
        return await _run_in(run, taskdir, logs, app_files)
    finally:
        shutil.rmtree(taskdir, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


async def _run_in(run: TaskRun, taskdir: Path, logs: Path, app_files: Path) -> TaskOutcome:
    error = ""
    try:
        _populate(taskdir, app_files)
        if run.inputs:
            if sha256_hex(run.inputs) != run.inputs_sha256:
                raise ValueError("inputs checksum mismatch")
            unpack_files(run.inputs, taskdir)
    except Exception as e:  # a broken staging is the attempt's failure, reported, not a crash
        return _outcome(None, 0.0, f"staging failed: {e}", logs, taskdir, None)

    env = {
        "PATH": _SAFE_PATH,
        "HOME": str(taskdir),
        "LANG": "C.UTF-8",
        "TMPDIR": str(taskdir),
        **run.env,
        "BJGRID_APP": run.app,
        "BJGRID_TASK": run.task,
        "BJGRID_ATTEMPT": str(run.attempt),
    }
    started = time.monotonic()
    exit_code: int | None = None
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        try:
            proc = await asyncio.create_subprocess_exec(
                *run.argv,
                cwd=taskdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_lower_priority,
            )
        except OSError as e:
            error = f"cannot start {run.argv[0]!r}: {e.strerror}"
            return _outcome(None, 0.0, error, logs, taskdir, None)
        with contextlib.suppress(psutil.Error, AttributeError):
            psutil.Process(proc.pid).ionice(psutil.IOPRIO_CLASS_IDLE)
        try:
            exit_code = await asyncio.wait_for(proc.wait(), run.timeout)
        except asyncio.TimeoutError:
            error = f"timed out after {run.timeout:g} s"
            _kill_group(proc.pid)
            await proc.wait()
            exit_code = None
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        finally:
            _kill_group(proc.pid)  # whatever the task left behind in its group goes too
    seconds = time.monotonic() - started
    if exit_code is not None and exit_code < 0:
        error = f"killed by signal {-exit_code}"
    outputs = run.outputs if exit_code == 0 else None
    return _outcome(exit_code, seconds, error, logs, taskdir, outputs)


def _populate(taskdir: Path, app_files: Path) -> None:
    """Give the task its own copy of the app's files."""
    if not app_files.is_dir():
        return
    for entry in app_files.iterdir():
        target = taskdir / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_copy)
        else:
            _copy(str(entry), str(target))


def _copy(src: str, dst: str) -> str:
    # Not a hard link: that would let a task modify the staged original for later tasks.
    shutil.copy2(src, dst)
    return dst


def _outcome(
    exit_code: int | None,
    seconds: float,
    error: str,
    logs: Path,
    taskdir: Path,
    outputs: tuple[str, ...] | None,
) -> TaskOutcome:
    """Pack stdout, stderr and (on success) the declared outputs into one archive.

    ``outputs`` is None when the attempt failed: then nothing but the logs comes back.
    Outputs may not be named ``stdout``/``stderr`` (app validation), so the logs are moved
    into the task directory, replacing whatever the task put under those names.
    """
    present = []
    for rel in outputs or ():
        if (taskdir / rel).exists() or (taskdir / rel).is_symlink():
            present.append(rel)
        else:
            error = error or f"declared output {rel!r} was not produced"
    try:
        pack_files(taskdir, present)  # refuses anything resolving outside the sandbox
    except Exception as e:
        error, present = f"output refused: {e}", []
    for name in ("stdout", "stderr"):
        (logs / name).touch()
        os.replace(logs / name, taskdir / name)
    if error:
        with open(taskdir / "stderr", "a") as f:
            f.write(f"\n[bjgrid] {error}\n")
    blob = pack_files(taskdir, ["stdout", "stderr", *present])
    return TaskOutcome(exit_code, seconds, error, blob, sha256_hex(blob))
