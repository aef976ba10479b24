"""The computing-element backend interface: one coordinator side, one worker side.

The coordinator core (``bonjourgrid.coordinator``) owns what every backend shares: recruiting
volunteers, the authenticated link to each (heartbeats, leases, loss detection), the task
table, the result store and progress. A backend adds only what its middleware does::

    coordinator side                               worker side (on each volunteer)
    ----------------                               -------------------------------
    start()            bring up the CE's head        (embedded: nothing; condor: collector,
                       negotiator + schedd; boinc: the project's HTTP server)
    prepare(worker) ─────────────────────────────► stage(bundle)   app files / startd / attach
    launch(task, attempt, worker, inputs) ───────► start(RunTask)  run, then TaskResult back
    cancel(attempt, worker) ─────────────────────► cancel(task, attempt)
    stop()             tear the head down     ◄──  close()         kill tasks, remove files

``places_tasks`` says who chooses where a task runs: False (embedded) means the coordinator
core places each ready task on a worker with free slots and calls ``launch`` with it; True
(condor, boinc) means the middleware's own scheduler does, and ``launch`` gets ``worker=None``.
Results always come back to the core as ``TaskResult`` (over the control channel, or made by
the backend from its middleware's records) so durability and exactly-once commit are shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.control.messages import RunTask, TaskResult
    from bonjourgrid.states.tasktable import Attempt

ResultSink = Callable[["TaskResult"], Awaitable[None]]
"""Where a worker backend sends each finished attempt's result (the coordinator's link)."""


class WorkerHandle(ABC):
    """What a coordinator backend may do with one recruited worker."""

    node: str
    host: str
    slots: int

    @abstractmethod
    async def send(self, msg: object) -> None: ...

    @abstractmethod
    async def expect(self, kind: type, timeout: float) -> object:
        """The next message of type ``kind`` from the worker (e.g. a staging ack)."""


class CoordinatorBackend(ABC):
    name: ClassVar[str]
    places_tasks: ClassVar[bool] = False

    @abstractmethod
    async def start(self) -> None:
        """Bring up the coordinator's part of the CE."""

    @abstractmethod
    async def prepare(self, worker: WorkerHandle) -> None:
        """Make a freshly reserved worker able to run tasks; raise if it cannot."""

    @abstractmethod
    async def launch(
        self, task: TaskSpec, attempt: Attempt, worker: WorkerHandle | None, inputs: bytes
    ) -> None:
        """Start one attempt. ``inputs`` is a tar of the predecessors' declared outputs."""

    @abstractmethod
    async def cancel(self, attempt: Attempt, worker: WorkerHandle | None) -> None: ...

    @abstractmethod
    async def stop(self) -> None:
        """Tear the CE's head down; idempotent."""

    def worker_lost(self, node: str) -> None:
        """The core lost worker ``node`` (its link failed or its lease ran out). A
        ``places_tasks`` backend makes its middleware give up on that machine (BOINC: reissue
        its results); the core requeues nothing itself for such backends."""
        return None

    def saved_state(self) -> dict[str, str]:
        """Small strings the backend needs again after a takeover (journaled and replicated
        by the core; handed back as ``CoordinatorContext.saved``). Called after start()."""
        return {}

    def running(self) -> list[tuple[str, int]]:
        """(task, attempt) of every attempt the middleware still runs or queues."""
        return []


class WorkerBackend(ABC):
    """One app's worker side on a volunteer, made when the volunteer accepts a reservation
    for that backend (ce_backends/registry.py) and closed when it is released.

    Backends whose middleware moves the tasks (condor, boinc) never get ``RunTask``; they say
    which of their own control messages they answer in ``handles`` and reply from ``handle``.
    The result methods default to "nothing here" for them.
    """

    name: ClassVar[str]
    handles: ClassVar[tuple[type, ...]] = ()
    """Backend-specific control messages (e.g. CondorJoin) this worker answers."""

    @abstractmethod
    async def stage(self, bundle: bytes, sha256: str) -> None: ...

    @abstractmethod
    def start(self, msg: RunTask) -> None: ...

    @abstractmethod
    async def cancel(self, task: str, attempt: int) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def handle(self, msg: object) -> object | None:
        """Answer one of ``handles``; the reply (if any) goes back to the coordinator."""
        raise TypeError(f"{type(self).__name__} does not handle {type(msg).__name__}")

    def attach(self, sink: ResultSink | None) -> list[TaskResult]:
        """Send future results to ``sink``; returns the results not yet acknowledged."""
        return []

    def serving(self, coordinator_address: str) -> None:
        """The volunteer now serves the coordinator whose (proven) channel comes from this IP
        address: at reservation and after each re-homing. BOINC attaches only to a project
        served there."""
        return None

    def running(self) -> list[str]:
        """``task#attempt`` of every attempt running here (for HeartbeatAck)."""
        return []

    def has(self, task: str, attempt: int) -> bool:
        """Whether (task, attempt) runs here or its result waits for an ack."""
        return False

    def acknowledged(self, task: str, attempt: int) -> None:
        """The coordinator committed (task, attempt): drop its result."""
        return None

    def suspend(self) -> None:
        """The owner is back: pause every running task (SIGSTOP its process group)."""
        return None

    def resume(self) -> None:
        """The owner left again: continue the paused tasks."""
        return None

    async def give_back(self, reason: str) -> list[str] | None:
        """The owner has needed the machine past the maximum suspension. A backend whose
        middleware moves the tasks hands them back by the middleware's own means (HTCondor
        evicts the job to the schedd's queue, BOINC aborts the result) and returns the
        attempts it gave back. None (the default): the volunteer agent sends ``GiveBack``
        for each running attempt to the coordinator and cancels it here."""
        return None
