"""Run one task attempt in a fresh private directory and pack what it produced.

What a task gets (docs/sandbox.md says exactly what is and is not isolated):

- its own fresh directory with the app's files and its predecessors' declared outputs;
- when the daemon runs as root, a slot account of its own: uid = gid = ``uid_base + n``
  (no /etc/passwd entry needed), leased host-wide for the task's lifetime (no two running
  tasks share one), no supplementary groups; its directory is owned by that uid, mode 0700,
  so other tasks cannot read it;
- rlimits: CPU time, address space (a backstop), file size, processes (per slot account);
- a scrubbed environment (PATH, HOME and TMPDIR = its directory, LANG, the app's ``env`` and
  ``BJGRID_*`` ids); the lowest CPU priority (nice 19) and the idle I/O class;
- where the kernel allows: no network (a private network namespace with only loopback) unless
  the task asks for it, and a private mount namespace (fresh /tmp and /dev/shm, its directory
  seen at ``/tmp/task``);
- when the daemon is not root, a bubblewrap sandbox (``bwrap.py``): the system's dirs
  read-only and its own directory at ``/tmp/task``, nothing of the owner's; no network unless
  asked; a PID namespace, so nothing it started outlives it. Where neither root nor
  bubblewrap can isolate it, the task is refused unless the owner allowed unisolated tasks;
- a cgroup of its own where the root daemon can make one (``cgroups.py``), else its slot
  account, else its process group and session: every process of the task is killed when it
  ends, **before** its directory is read (``task_processes.py``);
- a memory cap (its ``memory_mb``, else the default): the cgroup's limit where there is one,
  and the resident memory of all its processes is watched; reported as
  ``memory limit exceeded (N MB)``.

What comes back (``collect.py``): ``stdout``, ``stderr`` (unnamed files the daemon opened) and
the declared outputs, read through the task directory's descriptor without following links,
regular files and folders only, under a size cap. Suspension (owner policy) stops every
process of the task with SIGSTOP; the timeout does not run while a task is suspended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO

import psutil

from bonjourgrid.app.bundle import sha256_hex, unpack_files
from bonjourgrid.ce_backends.embedded import bwrap, cgroups, isolation, limits, staging
from bonjourgrid.ce_backends.embedded.collect import collect
from bonjourgrid.ce_backends.embedded.sandbox_config import (
    DEFAULT_SANDBOX,
    SandboxConfig,
    TaskOutcome,
    TaskRun,
)
from bonjourgrid.ce_backends.embedded.task_processes import TaskControl, TaskProcesses
from bonjourgrid.safepath import under

log = logging.getLogger(__name__)

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
_MB = 1024 * 1024
_Logs = tuple[IO[bytes], IO[bytes]]
"""A task's stdout and stderr: unnamed files the daemon opened."""
_DISK_CHECK_EVERY = 2.0
"""Seconds between two sizings of a task's directory (a walk of its files)."""


def _running_as_root() -> bool:
    return os.geteuid() == 0


async def run_task(
    run: TaskRun,
    *,
    app_files: Path,
    scratch: Path,
    config: SandboxConfig = DEFAULT_SANDBOX,
    slot: int = 0,
    control: TaskControl | None = None,
) -> TaskOutcome:
    """Run ``run`` and return its outcome. Never raises for a task's own failure (staging,
    start, limits, outputs): the outcome's ``error`` says what happened. ``slot`` (the
    worker's slot number) is the account tried first, so a task usually gets ``uid_base +
    slot``; any free account of the range will do."""
    taskdir = under(scratch, f"{run.task}.{run.attempt}")
    if taskdir.exists():
        shutil.rmtree(taskdir)
    taskdir.mkdir(parents=True)
    # The logs have no name: nothing the task does to its directory can reach them.
    logs = (_unnamed_file(scratch), _unnamed_file(scratch))
    slot_users = _running_as_root() if config.slot_users is None else config.slot_users
    lease: isolation.AccountLease | None = None
    try:
        if slot_users:
            try:
                lease = isolation.lease_account(
                    config.uid_base, config.uid_count, config.lock_dir, slot
                )
            except OSError as e:
                return await _outcome(None, 0.0, f"staging failed: {e}", logs, None, None, config)
        return await _run_in(run, taskdir, logs, app_files, config, lease, control or TaskControl())
    finally:
        if lease is not None:
            lease.release()
        for fh in logs:
            fh.close()
        shutil.rmtree(taskdir, ignore_errors=True)


def _unnamed_file(folder: Path) -> IO[bytes]:
    return tempfile.TemporaryFile(dir=folder)  # closed by run_task


def _make_cgroup(config: SandboxConfig, uid: int | None, cap_mb: int) -> cgroups.TaskCgroup | None:
    """The attempt's cgroup, or None where cgroups are off or not usable here."""
    lay = cgroups.layout() if config.cgroups and _running_as_root() else None
    if lay is None:
        return None
    try:
        return cgroups.TaskCgroup.create(
            lay, uid=uid, memory_bytes=cap_mb * _MB, pids_max=config.max_processes
        )
    except OSError as e:
        log.warning("no cgroup for this task (%s): slot-account sweep instead", e)
        return None


async def _run_in(
    run: TaskRun,
    taskdir: Path,
    logs: _Logs,
    app_files: Path,
    config: SandboxConfig,
    lease: isolation.AccountLease | None,
    control: TaskControl,
) -> TaskOutcome:
    uid = lease.uid if lease else None
    cap_mb = limits.memory_cap_mb(run, config)
    cgroup = await asyncio.to_thread(_make_cgroup, config, uid, cap_mb)
    task_fd = os.open(taskdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return await _run_with(
            run, taskdir, task_fd, logs, app_files, config, lease, control, cgroup
        )
    finally:
        os.close(task_fd)
        if cgroup is not None:
            await asyncio.to_thread(cgroup.destroy)


async def _run_with(
    run: TaskRun,
    taskdir: Path,
    task_fd: int,
    logs: _Logs,
    app_files: Path,
    config: SandboxConfig,
    lease: isolation.AccountLease | None,
    control: TaskControl,
    cgroup: cgroups.TaskCgroup | None,
) -> TaskOutcome:
    uid = lease.uid if lease else None
    iso = bwrap.isolation_for(config.bwrap, config.allow_unisolated)
    if iso.refuses:  # the volunteer refuses reservations too: this is the backstop
        return await _outcome(None, 0.0, f"refused: {iso.refusal()}", logs, None, None, config)
    boxed = iso.mode == bwrap.BWRAP
    want = not boxed and (config.isolate_network or config.isolate_mounts)
    caps = isolation.probe() if want else None
    new_network = bool(caps and caps.network_namespace and config.isolate_network)
    new_network = new_network and not run.network
    new_mounts = bool(caps and caps.mount_namespace and config.isolate_mounts)
    try:
        staging.populate(taskdir, app_files)
        if run.inputs:
            if sha256_hex(run.inputs) != run.inputs_sha256:
                raise ValueError("inputs checksum mismatch")
            await asyncio.to_thread(
                unpack_files,
                run.inputs,
                taskdir,
                max_bytes=config.max_unpack_mb * _MB,
                max_members=config.max_unpack_files,
            )
        if lease is not None and not lease.empty:  # leftovers of a crashed holder
            await asyncio.to_thread(isolation.kill_all_of, lease.uid)
            lease.empty = True
        if uid is not None:
            staging.prepare_for(taskdir, uid)
            blocked = None if new_mounts else staging.unreachable_ancestor(taskdir)
            if blocked is not None:
                raise ValueError(f"uid {uid} cannot reach its directory ({blocked} is private)")
    except Exception as e:  # a broken staging is the attempt's failure, reported, not a crash
        return await _outcome(None, 0.0, f"staging failed: {e}", logs, None, None, config)

    seen_dir = isolation.TASK_MOUNT if new_mounts or boxed else str(taskdir)
    argv = run.argv
    if boxed:
        argv = (*_bwrap_argv(iso.program, taskdir, run, config), *run.argv)
    env = {
        "PATH": _SAFE_PATH,
        "HOME": seen_dir,
        "LANG": "C.UTF-8",
        "TMPDIR": seen_dir,
        **run.env,
        "BJGRID_APP": run.app,
        "BJGRID_TASK": run.task,
        "BJGRID_ATTEMPT": str(run.attempt),
    }
    cap_mb = limits.memory_cap_mb(run, config)
    setup = isolation.ChildSetup(
        rlimits=tuple(limits.rlimits(cap_mb, config, uid)),
        uid=uid,
        gid=uid,
        new_network=new_network,
        new_mounts=new_mounts,
        tmp_size_mb=config.tmp_size_mb,
        cgroup_procs=cgroup.procs_files() if cgroup is not None else (),
    )
    started = time.monotonic()
    if lease is not None:
        lease.empty = False  # from here on a process of the uid may exist
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=taskdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=logs[0],
            stderr=logs[1],
            start_new_session=True,
            preexec_fn=setup,
        )
    except Exception as e:  # OSError, or SubprocessError from the child's set-up
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        error = f"cannot start {run.argv[0]!r}: {why}"
        return await _outcome(None, 0.0, error, logs, None, None, config)
    procs = TaskProcesses(proc.pid, cgroup=cgroup, uid=uid)
    control.attach(procs)
    with contextlib.suppress(psutil.Error, AttributeError):
        psutil.Process(proc.pid).ionice(psutil.IOPRIO_CLASS_IDLE)
    try:
        exit_code, error = await _watch(proc, run, config, cap_mb, taskdir, control, procs)
    finally:
        control.detach()
        # Every process of the task dies before anything in its directory is read: an
        # escaped child could otherwise swap an output for a link while it is collected.
        await asyncio.shield(asyncio.to_thread(procs.kill_all))
        if lease is not None and cgroup is None:
            lease.empty = True  # kill_all swept the uid: the next lease need not
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
    if cgroup is not None and cgroup.oom_kills() > 0 and not error:
        error = f"memory limit exceeded ({cap_mb} MB)"
    seconds = time.monotonic() - started - control.suspended_for(time.monotonic())
    if not error and exit_code is not None and exit_code < 0:
        error = limits.signal_reason(-exit_code, config)
    elif not error and exit_code in limits.SHELL_LIMIT_CODES:  # a shell's child died of a limit
        error = limits.signal_reason(exit_code - 128, config)
    if not error and exit_code and limits.looks_out_of_memory(logs[1]):
        error = f"memory limit exceeded ({cap_mb} MB)"
    if error.startswith("memory limit exceeded"):
        exit_code = None  # reported as the attempt's failure reason, not as an exit status
    outputs = run.outputs if exit_code == 0 else None
    return await _outcome(exit_code, max(0.0, seconds), error, logs, task_fd, outputs, config)


def _bwrap_argv(program: str, taskdir: Path, run: TaskRun, config: SandboxConfig) -> list[str]:
    return bwrap.argv(
        program,
        task_dir=str(taskdir),
        layout=bwrap.system_layout(),
        network=run.network,
        tmp_size_mb=config.tmp_size_mb,
        resolver=bwrap.system_layout(bwrap.RESOLVER_DIRS),
    )


async def _watch(
    proc: asyncio.subprocess.Process,
    run: TaskRun,
    config: SandboxConfig,
    cap_mb: int,
    taskdir: Path,
    control: TaskControl,
    procs: TaskProcesses,
) -> tuple[int | None, str]:
    """Wait for the task; kill it on timeout or when over its memory or disk cap."""
    started = time.monotonic()
    next_disk = started + _DISK_CHECK_EVERY
    waiter = asyncio.ensure_future(proc.wait())
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=config.watch_interval)
            if done:
                return waiter.result(), ""
            now = time.monotonic()
            if control.suspended:
                continue
            ran = now - started - control.suspended_for(now)
            reason = ""
            if run.timeout is not None and ran > run.timeout:
                reason = f"timed out after {run.timeout:g} s"
            elif cap_mb > 0 and await _over_memory(procs, cap_mb):
                reason = f"memory limit exceeded ({cap_mb} MB)"
            elif config.disk_mb > 0 and now >= next_disk:
                next_disk = now + _DISK_CHECK_EVERY
                used = await asyncio.to_thread(_tree_size, taskdir)
                if used > config.disk_mb * _MB:
                    reason = f"disk limit exceeded ({config.disk_mb} MB)"
            if reason:
                log.info("task %s#%d killed: %s", run.task, run.attempt, reason)
                await asyncio.to_thread(procs.kill_all)
                await waiter
                return None, reason
    finally:
        if not waiter.done():
            waiter.cancel()


async def _over_memory(procs: TaskProcesses, cap_mb: int) -> bool:
    """Whether the task is over its cap: the kernel killed one of its processes for the
    cgroup's limit, or all its processes together hold more than the cap."""
    if procs.cgroup is not None and procs.cgroup.oom_kills() > 0:
        return True
    return await asyncio.to_thread(procs.rss) > cap_mb * _MB


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


async def _outcome(
    exit_code: int | None,
    seconds: float,
    error: str,
    logs: _Logs,
    task_fd: int | None,
    outputs: tuple[str, ...] | None,
    config: SandboxConfig,
) -> TaskOutcome:
    """Pack stdout, stderr and (on success) the declared outputs (``collect.py``), in a thread.

    ``outputs`` is None when the attempt failed: then nothing but the logs comes back.
    Called once every process of the task is dead.
    """
    blob, sha, error = await asyncio.to_thread(
        collect,
        task_fd if task_fd is not None else -1,
        logs,
        outputs if task_fd is not None else None,
        error,
        max_bytes=config.max_output_mb * _MB,
        max_files=config.max_output_files,
    )
    return TaskOutcome(exit_code, seconds, error, blob, sha)


__all__ = ["DEFAULT_SANDBOX", "SandboxConfig", "TaskControl", "TaskOutcome", "TaskRun", "run_task"]
