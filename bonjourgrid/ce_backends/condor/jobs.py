"""Tasks as HTCondor jobs, through the ``htcondor2`` bindings (the submitter's side).

Pure part: :func:`submit_description` (a task -> submit commands), :func:`condor_arguments`,
:func:`condor_environment`, and :func:`task_state` (HTCondor's JobStatus -> our TaskState, a
table). I/O part: :class:`CondorClient`, the only code here that talks to the schedd; the
bindings block, so async callers wrap its calls in ``asyncio.to_thread``.

Each job has a directory (its Iwd) that the schedd sees at the same path (see
installation.py): inputs are staged there, HTCondor transfers them to the execute node, and
brings back the declared outputs plus ``stdout`` and ``stderr`` into it. The directory belongs
to the job user, because the shadow writes there as that user.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from bonjourgrid.states.taskstate import TaskState


class JobStatus(IntEnum):
    """HTCondor's JobStatus attribute (stable numbers, see the HTCondor manual)."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


# HTCondor's job states -> ours. COMPLETED depends on the exit code (see task_state); HELD
# means HTCondor gave up on its own (e.g. a declared output is missing): the task failed.
TRANSLATE: dict[JobStatus, TaskState] = {
    JobStatus.IDLE: TaskState.READY,
    JobStatus.RUNNING: TaskState.RUNNING,
    JobStatus.TRANSFERRING_OUTPUT: TaskState.RUNNING,
    JobStatus.SUSPENDED: TaskState.RUNNING,
    JobStatus.COMPLETED: TaskState.DONE,
    JobStatus.REMOVED: TaskState.FAILED,
    JobStatus.HELD: TaskState.FAILED,
}


def task_state(status: int, exit_code: int | None = None) -> TaskState:
    """Our state of a job in HTCondor state ``status`` (a COMPLETED job failed unless exit 0)."""
    state = TRANSLATE[JobStatus(status)]
    if state is TaskState.DONE and exit_code != 0:
        return TaskState.FAILED
    return state


@dataclass(frozen=True)
class JobSpec:
    """One task as a job. ``argv`` runs on the execute node inside its scratch directory."""

    name: str
    argv: Sequence[str]
    job_dir: Path
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    max_retries: int = 0
    cpus: int = 1
    memory_mb: int = 64


def condor_arguments(argv: Sequence[str]) -> str:
    """``argv`` in HTCondor's new argument syntax (double-quoted; args in single quotes)."""
    parts = []
    for a in argv:
        q = a.replace('"', '""').replace("'", "''")
        parts.append(f"'{q}'")
    return '"' + " ".join(parts) + '"'


def condor_environment(env: Mapping[str, str]) -> str:
    """``env`` in HTCondor's new environment syntax."""
    for k in env:
        if not k or "=" in k or any(c.isspace() for c in k):
            raise ValueError(f"bad environment variable name {k!r}")
    parts = []
    for k, v in env.items():
        q = v.replace('"', '""').replace("'", "''")
        parts.append(f"{k}='{q}'")
    return '"' + " ".join(parts) + '"'


def submit_description(spec: JobSpec) -> dict[str, str]:
    """The submit commands for ``spec`` (vanilla universe, file transfer, no shared FS)."""
    if not spec.argv:
        raise ValueError(f"{spec.name}: empty command")
    for name in [*spec.inputs, *spec.outputs]:
        if not name or name.startswith("/") or ".." in Path(name).parts or "," in name:
            raise ValueError(f"{spec.name}: bad file name {name!r}")
    d = spec.job_dir
    sub = {
        "universe": "vanilla",
        "executable": spec.argv[0],
        # The command is a program of the execute node (e.g. /bin/sh), or an input file.
        "transfer_executable": "true" if spec.argv[0] in spec.inputs else "false",
        "arguments": condor_arguments(spec.argv[1:]),
        "initialdir": str(d),
        "output": str(d / "stdout"),
        "error": str(d / "stderr"),
        "log": str(d / "job.log"),
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "transfer_input_files": ",".join(i for i in spec.inputs if i != spec.argv[0]),
        # Declare at least one file (coordinator.py always does): with none, even an empty
        # list, the starter waits ~1 s between the input transfer and the job's start.
        "transfer_output_files": ",".join(spec.outputs),
        "max_retries": str(spec.max_retries),
        "request_cpus": str(spec.cpus),
        "request_memory": f"{spec.memory_mb}MB",
        "request_disk": "1MB",
        "environment": condor_environment(spec.env),
        "batch_name": spec.name,
        "+BjgridTask": f'"{spec.name}"',
    }
    return sub


@dataclass(frozen=True)
class JobInfo:
    """What the schedd says about one job."""

    cluster: int
    status: JobStatus
    exit_code: int | None
    starts: int
    seconds: float
    hold_reason: str
    remote_host: str

    @property
    def state(self) -> TaskState:
        return task_state(self.status, self.exit_code)


_ATTRS = [
    "ClusterId", "JobStatus", "ExitCode", "NumJobStarts", "RemoteWallClockTime",
    "HoldReason", "RemoteHost", "LastRemoteHost", "ExitBySignal", "ExitSignal",
]  # fmt: skip


def job_info(ad: Mapping[str, Any]) -> JobInfo:
    """A :class:`JobInfo` from a job ClassAd (a mapping: pure)."""
    exit_code = ad.get("ExitCode")
    if ad.get("ExitBySignal"):
        exit_code = 128 + int(ad.get("ExitSignal", 0))
    return JobInfo(
        cluster=int(ad["ClusterId"]),
        status=JobStatus(int(ad["JobStatus"])),
        exit_code=None if exit_code is None else int(exit_code),
        starts=int(ad.get("NumJobStarts", 0)),
        seconds=float(ad.get("RemoteWallClockTime", 0.0)),
        hold_reason=str(ad.get("HoldReason", "")),
        remote_host=str(ad.get("RemoteHost") or ad.get("LastRemoteHost") or ""),
    )


def _check_own_name() -> None:
    """Fail fast where the bindings would hang: loading them resolves this host's own name
    (before reading any configuration) and retries every 3 s, forever, while the resolver
    says "try again" (e.g. a name not in /etc/hosts and no DNS server reachable)."""
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise RuntimeError(
                f"this host's name {name!r} does not resolve ({exc}); the htcondor2 bindings "
                "would hang: add it to /etc/hosts"
            ) from None


# The bindings' configuration is per process; CEs take turns with it.
_CONFIG_LOCK = threading.Lock()
_AT_IMPORT = ("NO_DNS", "DEFAULT_DOMAIN_NAME", "ENABLE_IPV6")


class CondorClient:
    """The submitter of one CE: submit, follow, remove jobs; list the pool's slots.

    ``params`` come from ``config.client_params``. Must run where the head's address is
    reachable (the coordinator's network namespace).
    """

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = dict(params)
        self.pool = self.params["COLLECTOR_HOST"]
        self._schedd_ad: Any = None

    def _configured(self) -> Any:
        if "htcondor2" not in sys.modules:
            _check_own_name()
            # Read when the bindings load: without NO_DNS they resolve our own host name
            # first, which hangs for the resolver's timeout on a LAN without DNS.
            for k in _AT_IMPORT:
                os.environ.setdefault(f"_CONDOR_{k}", self.params[k])
            os.environ.setdefault("CONDOR_CONFIG", os.devnull)
        import htcondor2

        for k, v in self.params.items():
            htcondor2.param[k] = v
        return htcondor2

    def _schedd(self, htcondor2: Any) -> Any:
        """The CE's schedd; its ad is asked of the collector once (one round trip less per
        call: ~100 tasks are submitted one by one), and again after a failed call."""
        if self._schedd_ad is None:
            ads = htcondor2.Collector(self.pool).query(htcondor2.AdType.Schedd)
            if not ads:
                raise RuntimeError(f"no schedd advertised at {self.pool}")
            self._schedd_ad = ads[0]
        return htcondor2.Schedd(self._schedd_ad)

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[Any, Any]]:
        """(htcondor2, schedd) under the bindings' lock; a failure forgets the schedd's ad."""
        with _CONFIG_LOCK:
            htcondor2 = self._configured()
            try:
                yield htcondor2, self._schedd(htcondor2)
            except Exception:
                self._schedd_ad = None
                raise

    def submit(self, spec: JobSpec) -> int:
        """Queue ``spec``; its cluster id."""
        with self._session() as (htcondor2, schedd):
            result = schedd.submit(htcondor2.Submit(submit_description(spec)), count=1)
            return int(result.cluster())

    def jobs(self, clusters: Iterable[int]) -> dict[int, JobInfo]:
        """The current record of each of ``clusters`` (queue first, then history)."""
        wanted = sorted(set(clusters))
        if not wanted:
            return {}
        constraint = " || ".join(f"ClusterId == {c}" for c in wanted)
        found: dict[int, JobInfo] = {}
        with self._session() as (_, schedd):
            for ad in schedd.query(constraint, projection=_ATTRS):
                info = job_info(ad)
                found[info.cluster] = info
            missing = [c for c in wanted if c not in found]
            if missing:
                c2 = " || ".join(f"ClusterId == {c}" for c in missing)
                for ad in schedd.history(c2, projection=_ATTRS, match=len(missing)):
                    info = job_info(ad)
                    found.setdefault(info.cluster, info)
        return found

    def remove(self, clusters: Iterable[int], reason: str = "cancelled by bonjourgrid") -> None:
        wanted = sorted(set(clusters))
        if not wanted:
            return
        with self._session() as (htcondor2, schedd):
            schedd.act(
                htcondor2.JobAction.Remove,
                " || ".join(f"ClusterId == {c}" for c in wanted),
                reason=reason,
            )

    def requeue(self, clusters: Iterable[int], reason: str) -> None:
        """Put running jobs back in the queue now (hold, then release: the schedd drops their
        shadows without waiting for the lost startd's claim lease)."""
        wanted = sorted(set(clusters))
        if not wanted:
            return
        constraint = " || ".join(f"ClusterId == {c}" for c in wanted)
        with self._session() as (htcondor2, schedd):
            schedd.act(htcondor2.JobAction.Hold, constraint, reason=reason)
            schedd.act(htcondor2.JobAction.Release, constraint, reason=reason)

    def reschedule(self) -> None:
        """Ask for a negotiation cycle now (a new machine joined: match queued jobs to it)."""
        with self._session() as (_, schedd):
            schedd.reschedule()

    def slots(self) -> list[str]:
        """Names of the startd slots the collector knows (``slot1@<host>``)."""
        with _CONFIG_LOCK:
            htcondor2 = self._configured()
            ads = htcondor2.Collector(self.pool).query(htcondor2.AdType.Startd, projection=["Name"])
        return sorted(str(ad["Name"]) for ad in ads)

    def machines(self) -> list[str]:
        """The distinct machines (hosts) with a startd in the pool."""
        return sorted({name.split("@", 1)[-1] for name in self.slots()})
