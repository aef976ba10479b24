"""Following a submitted attempt through the schedd's job states.

The coordinator's poller asks the schedd about every job it follows (`JobInfo`) and hands
each answer to `next_step`, which says what it means for the attempt: keep waiting, forget
a cancelled job that left the queue, note an eviction, or end the attempt (with the exit
code, seconds and error its `TaskResult` carries). Kept out of the coordinator so the rules
(evictions restart the timeout, a held job is removed and fails, the timeout is counted
from the job's start, not its submission) are testable with no daemon and no event loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bonjourgrid.ce_backends.condor.jobs import JobInfo, JobStatus

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.control.messages import TaskResult


@dataclass
class Job:
    """One submitted attempt, followed from its submission until its result is taken."""

    task: TaskSpec
    attempt: int
    dir: Path
    cluster: int
    submitted: float
    running_since: float | None = None
    cancelled: bool = False
    requeuing: bool = False
    result: TaskResult | None = None


class Step(enum.Enum):
    WAIT = "wait"
    """Nothing to do: still queued or running (or deliberately held, or being cancelled)."""
    FORGET = "forget"
    """A cancelled job left the queue: drop it and its files (no result is reported)."""
    EVICTED = "evicted"
    """Back in the queue after running (the volunteer's owner needed the machine)."""


@dataclass(frozen=True)
class Ended:
    """The attempt is over: its result carries these; ``remove`` first (condor_rm) if set."""

    exit_code: int | None
    seconds: float
    error: str
    remove: bool = False


def next_step(job: Job, info: JobInfo, now: float) -> Step | Ended:
    """What the schedd's ``info`` about ``job`` means at monotonic time ``now``.

    Only for a job with no result yet. Updates ``job.running_since`` (the job was seen
    starting, or evicted); nothing else changes."""
    if job.cancelled:
        if info.status in (JobStatus.REMOVED, JobStatus.COMPLETED, JobStatus.HELD):
            return Step.FORGET
        return Step.WAIT
    if job.requeuing:  # held for a moment on purpose (worker_lost)
        return Step.WAIT
    evicted = False
    if job.running_since is None and info.status is JobStatus.RUNNING:
        job.running_since = now
    elif job.running_since is not None and info.status is JobStatus.IDLE:
        # Evicted (a volunteer's owner needed the machine: worker.give_back): back in
        # the schedd's queue, HTCondor runs it elsewhere; its timeout starts again.
        job.running_since = None
        evicted = True
    timeout = job.task.timeout
    if info.status is JobStatus.COMPLETED:
        return Ended(info.exit_code, info.seconds, "")
    if info.status is JobStatus.HELD:
        return Ended(None, info.seconds, f"held by HTCondor: {info.hold_reason}", remove=True)
    if info.status is JobStatus.REMOVED:
        return Ended(None, info.seconds, "removed from HTCondor")
    if job.running_since is not None and timeout and now - job.running_since > timeout:
        seconds = now - job.running_since
        return Ended(None, seconds, f"timed out after {timeout:g} s", remove=True)
    return Step.EVICTED if evicted else Step.WAIT


def node_of(members: dict[str, str], remote_host: str) -> str | None:
    """The worker node whose startd is ``remote_host`` (``slot1_1@<machine>``), if a member."""
    machine = remote_host.rsplit("@", 1)[-1]
    for node, m in members.items():
        if m == machine:
            return node
    return None
