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
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from bonjourgrid.app.spec import TaskSpec
    from bonjourgrid.control.messages import RunTask
    from bonjourgrid.states.tasktable import Attempt


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


class WorkerBackend(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def stage(self, bundle: bytes, sha256: str) -> None: ...

    @abstractmethod
    def start(self, msg: RunTask) -> None: ...

    @abstractmethod
    async def cancel(self, task: str, attempt: int) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...
