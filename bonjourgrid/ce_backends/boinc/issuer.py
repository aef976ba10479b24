"""Which BOINC results go to which client, and what became of them. Pure: time is passed in.

Theory of operation: the caller submits one ``Job`` per task attempt; each job becomes exactly
one BOINC result (its own workunit, named ``bjg<seq>-<token>_<task>_<attempt>``, where the
token is random: the output file's name is the capability to upload it; the attempt number
reaches the wrapper as ``--attempt N`` on its command line, so a job's input files serve every
attempt). On every scheduler
request ``handle`` does, in order:

1. host id: a client with ``hostid`` 0 gets a new id (the same one again for a known CPID);
   a host id known under another name (another account) is not taken over: that client
   gets a new id of its own;
2. reports: each reported result is acked; only results issued to this host count; one
   that ran and uploaded is ``Succeeded``
   (the caller then reads the uploaded output), one the volunteer aborted (its owner needs
   the machine: ``given_back``) is *lost*, anything else is ``Failed`` with the client's
   reason (download or signature error, crash);
3. lost and stale results: a live result issued to this host that the client neither reports
   nor lists among its ``other_results`` is ``Failed`` (the client lost it); a result the
   client still lists but that is no longer live (expired, cancelled) is aborted;
4. work: if the client asks for work, pending jobs (FIFO) go to it while their CPUs fit in
   the host's CPUs (times ``queue_per_cpu``) not already taken by its live results.

``expire(now)`` fails live results past their deadline; ``host_lost`` fails a vanished host's
results at once. Those results, and the ones a client lost, are *lost*: the machine failed, not
the task, so up to ``lost_reissues`` times the same attempt is issued again (a new result,
``Failed.requeued``), without touching the job's ``retries``. A result that failed otherwise
(or was lost once too often) is reissued as the next attempt while its job has ``retries``
left (``Failed.reissued``); with ``retries=0`` the caller decides (the coordinator core retries
through its task table).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bonjourgrid.ce_backends.boinc.scheduler import Assignment, FileRef, SchedulerRequest

OUTPUT_OPEN_NAME = "bjg_out"
"""The name the wrapper writes its packed result to, in the slot directory."""


@dataclass(frozen=True)
class IssuerConfig:
    deadline: float = 3600.0
    """Seconds from issue to report for a task without a timeout."""
    grace: float = 120.0
    """Added to a task's own timeout to make its deadline (downloads, start-up, upload)."""
    flops: float = 1e9
    """The app version's ``<flops>``; run-time limits are expressed in flops through it."""
    max_output_bytes: int = 1 << 30
    disk_bound: float = 2e9
    queue_per_cpu: int = 1
    """Results a client may hold per CPU. 2 lets the next task start the moment one ends,
    instead of after its report and the next RPC (~6 s here), at the cost of reissues if the
    volunteer leaves; 1 spreads a small bag over more volunteers."""
    lost_reissues: int = 0
    """How many times a lost result (deadline missed, host or result lost) is issued again as
    the same attempt before it counts as a failure."""
    memory_share: float = 0.4
    """Default per-CPU memory bound, as a share of the host's RAM divided by its CPUs.

    The client both kills a task whose working set exceeds ``rsc_memory_bound`` and delays
    starting one whose bound does not fit in its RAM budget (50% when the user is active),
    so the bounds of a full host must stay under that."""


@dataclass(frozen=True)
class Job:
    """One task attempt to run as one BOINC result."""

    task: str
    attempt: int
    inputs: tuple[tuple[FileRef, str], ...]
    """(file, open name) pairs the wrapper finds in its slot."""
    cpus: int = 1
    timeout: float | None = None
    memory_mb: int = 0
    retries: int = 0
    """How many times the model itself reissues this task after a failed result."""


@dataclass(frozen=True)
class Succeeded:
    task: str
    attempt: int
    result: str
    output: str
    """The uploaded file's name: the caller reads the wrapper's packed result from it."""
    host: str
    elapsed: float


@dataclass(frozen=True)
class Failed:
    task: str
    attempt: int
    result: str
    host: str
    reason: str
    stderr: str = ""
    elapsed: float = 0.0
    reissued: int | None = None
    """The new attempt number when the model reissued the task."""
    requeued: bool = False
    """The result was lost and the same attempt waits to be issued again: not an outcome."""


Event = Succeeded | Failed


@dataclass(frozen=True)
class Dispatch:
    """What to answer one scheduler request with, and what happened to results."""

    hostid: int | None
    assignments: tuple[Assignment, ...] = ()
    acks: tuple[str, ...] = ()
    aborts: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()


@dataclass
class _Live:
    name: str
    job: Job
    hostid: int
    host: str
    deadline: float


@dataclass
class _Host:
    hostid: int
    cpid: str
    name: str
    live: set[str] = field(default_factory=set)


class IssueError(ValueError):
    """A job that cannot be submitted (a duplicate attempt)."""


def random_token() -> str:
    """The unguessable part of a result name (64 random bits)."""
    return secrets.token_hex(8)


class Issuer:
    def __init__(
        self, config: IssuerConfig | None = None, token: Callable[[], str] = random_token
    ) -> None:
        """``token`` makes the random part of each result name (tests pass a fixed one)."""
        self.config = config or IssuerConfig()
        self._token = token
        self._pending: deque[Job] = deque()
        self._live: dict[str, _Live] = {}
        self._hosts: dict[int, _Host] = {}
        self._by_cpid: dict[str, int] = {}
        self._known: set[tuple[str, int]] = set()
        self._losses: dict[tuple[str, int], int] = {}
        self._seq = 0

    # --- the caller's side ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        key = (job.task, job.attempt)
        if key in self._known:
            raise IssueError(f"{job.task}#{job.attempt} was already submitted")
        self._known.add(key)
        self._pending.append(job)

    def cancel(self, task: str, attempt: int) -> bool:
        """Withdraw an attempt: dropped if pending, aborted on its client's next RPC."""
        for job in list(self._pending):
            if (job.task, job.attempt) == (task, attempt):
                self._pending.remove(job)
                return True
        for live in list(self._live.values()):
            if (live.job.task, live.job.attempt) == (task, attempt):
                self._drop(live)
                return True
        return False

    def attempts(self) -> list[tuple[str, int]]:
        """(task, attempt) of every job pending or issued."""
        live = [(x.job.task, x.job.attempt) for x in self._live.values()]
        return [(j.task, j.attempt) for j in self._pending] + live

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._live)

    def result_of(self, output: str) -> tuple[str, int] | None:
        """(task, attempt) of the live result whose output file is ``output``."""
        live = self._live.get(output.removesuffix("_out"))
        if live is None or output != f"{live.name}_out":
            return None
        return live.job.task, live.job.attempt

    def next_deadline(self) -> float | None:
        return min((live.deadline for live in self._live.values()), default=None)

    def expire(self, now: float) -> tuple[Event, ...]:
        """Fail every live result whose deadline has passed."""
        late = [live for live in self._live.values() if live.deadline <= now]
        why = "missed its report deadline"
        return tuple(self._fail(live, why, "", 0.0, lost=True) for live in late)

    def host_lost(self, host: str) -> tuple[Event, ...]:
        """Fail at once every live result of the host(s) named ``host`` (it is gone)."""
        gone = [live for live in self._live.values() if live.host == host]
        return tuple(self._fail(live, f"host {host} was lost", "", 0.0, lost=True) for live in gone)

    # --- a scheduler request --------------------------------------------------------------

    def handle(self, req: SchedulerRequest, now: float) -> Dispatch:
        hostid, new_id = self._host(req)
        host = self._hosts[hostid]
        events: list[Event] = []
        reported = {r.name for r in req.reported}
        for r in req.reported:
            live = self._live.get(r.name)
            if live is None or live.hostid != hostid:
                continue  # late, unknown or another host's: acked below, so it is forgotten
            if r.ok:
                self._drop(live)
                out = f"{live.name}_out"
                events.append(
                    Succeeded(live.job.task, live.job.attempt, live.name, out, host.name, r.elapsed)
                )
            elif r.given_back:  # the volunteer's owner came first: the machine's, not the task's
                why = "given back by the volunteer (its owner needs the machine)"
                events.append(self._fail(live, why, r.stderr_out, r.elapsed, lost=True))
            else:
                events.append(self._fail(live, r.reason or "failed", r.stderr_out, r.elapsed))
        listed = set(req.other_results)
        aborts = tuple(sorted(n for n in listed if n not in self._live))
        for name in sorted(host.live - listed - reported):
            lost = self._live[name]
            events.append(self._fail(lost, "the client lost the result", "", 0.0, lost=True))
        assignments = self._assign(req, host, now) if req.wants_work else ()
        return Dispatch(
            hostid=hostid if new_id else None,
            assignments=assignments,
            acks=tuple(r.name for r in req.reported),
            aborts=aborts,
            events=tuple(events),
        )

    def _host(self, req: SchedulerRequest) -> tuple[int, bool]:
        if req.hostid > 0:
            known = self._hosts.get(req.hostid)
            if known is None:  # a host id from before (e.g. another term)
                self._hosts[req.hostid] = _Host(req.hostid, req.host_cpid, req.domain_name)
                return req.hostid, False
            if known.name == req.domain_name:
                return req.hostid, False
            # Another account's host id: never take over its results; a host of its own.
        hostid = self._by_cpid.get(req.host_cpid) if req.host_cpid else None
        if hostid is not None and self._hosts[hostid].name != req.domain_name:
            hostid = None  # a CPID seen under another account: not that host
        if hostid is None:
            hostid = max(self._hosts, default=0) + 1
            self._hosts[hostid] = _Host(hostid, req.host_cpid, req.domain_name)
            if req.host_cpid:
                self._by_cpid[req.host_cpid] = hostid
        return hostid, True

    def _assign(self, req: SchedulerRequest, host: _Host, now: float) -> tuple[Assignment, ...]:
        room = req.ncpus * max(1, self.config.queue_per_cpu)
        free = room - sum(self._live[n].job.cpus for n in host.live)
        out: list[Assignment] = []
        for job in list(self._pending):
            if free <= 0:
                break
            if job.cpus > free:
                continue
            self._pending.remove(job)
            free -= job.cpus
            out.append(self._issue(job, host, req, now))
        return tuple(out)

    def _issue(self, job: Job, host: _Host, req: SchedulerRequest, now: float) -> Assignment:
        cfg = self.config
        self._seq += 1
        name = f"bjg{self._seq}-{self._token()}_{job.task.replace('.', '-')}_{job.attempt}"
        span = cfg.deadline if job.timeout is None else job.timeout + cfg.grace
        self._live[name] = _Live(name, job, host.hostid, host.name, now + span)
        host.live.add(name)
        share = cfg.memory_share * req.memory_bytes / max(1, req.ncpus) * job.cpus
        return Assignment(
            result=name,
            workunit=name,
            inputs=job.inputs,
            output=f"{name}_out",
            output_open_name=OUTPUT_OPEN_NAME,
            max_output_bytes=cfg.max_output_bytes,
            deadline=now + span,
            fpops_bound=cfg.flops * span,
            memory_bound=max(float(job.memory_mb) * 2**20, share, 64.0 * 2**20),
            disk_bound=cfg.disk_bound,
            cpus=job.cpus,
            command_line=f"--attempt {job.attempt}",
        )

    def _drop(self, live: _Live) -> None:
        del self._live[live.name]
        host = self._hosts.get(live.hostid)
        if host is not None:
            host.live.discard(live.name)

    def _fail(
        self, live: _Live, reason: str, stderr: str, elapsed: float, *, lost: bool = False
    ) -> Failed:
        self._drop(live)
        job = live.job
        key = (job.task, job.attempt)
        if lost and self._losses.get(key, 0) < self.config.lost_reissues:
            self._losses[key] = self._losses.get(key, 0) + 1
            self._pending.appendleft(job)
            return Failed(
                job.task, job.attempt, live.name, live.host, reason, stderr, elapsed, requeued=True
            )
        reissued: int | None = None
        if job.retries > 0:
            again = replace(job, attempt=job.attempt + 1, retries=job.retries - 1)
            if (again.task, again.attempt) not in self._known:
                self._known.add((again.task, again.attempt))
                self._pending.appendleft(again)
                reissued = again.attempt
        return Failed(
            job.task, job.attempt, live.name, live.host, reason, stderr, elapsed, reissued
        )


__all__ = [
    "OUTPUT_OPEN_NAME",
    "Dispatch",
    "Event",
    "Failed",
    "IssueError",
    "Issuer",
    "IssuerConfig",
    "Job",
    "Succeeded",
    "random_token",
]
