"""Which CE backends this machine can serve, and the worker side made for each reservation.

A volunteer advertises a backend in its TXT record (``b=``) only when it can really run it:
``embedded`` always; ``condor`` when HTCondor daemons are usable here (on PATH, or a rootfs
from scripts/setup-condor); ``boinc`` when Debian's ``boinc-client`` is installed. Coordinators
recruit for ``--backend X`` only machines that advertise X (coordinator/matchmaking.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bonjourgrid.ce_backends.base import CoordinatorBackend, WorkerBackend

if TYPE_CHECKING:
    from bonjourgrid.app.spec import AppSpec
    from bonjourgrid.ce_backends.embedded.sandbox import SandboxConfig
    from bonjourgrid.control.messages import TaskResult


class AppView(Protocol):
    """What a coordinator backend reads of its app coordinator (``term`` changes on takeover:
    read it when sending, never cache it)."""

    app_id: str
    spec: AppSpec
    bundle: bytes
    bundle_sha: str

    @property
    def term(self) -> int: ...


BackendResult = Callable[["TaskResult", "str | None"], Awaitable[None]]
"""How a ``places_tasks`` backend hands a finished attempt to the core: the result, and the
node id of the worker that ran it (None when the middleware does not say). The core commits
it exactly once by (task, attempt); an exception means "not committed, deliver it again"."""


@dataclass(frozen=True)
class CoordinatorContext:
    """What the core gives a coordinator backend."""

    app: AppView
    address: str
    """This coordinator's address on the LAN (the one its workers reach it at)."""
    root: Path
    """A directory of the CE's own on the coordinator; the backend removes it in stop()."""
    on_result: BackendResult
    saved: dict[str, str] = field(default_factory=dict)
    """What the backend's ``saved_state()`` returned under an earlier term of this app
    (journaled and replicated by the core: e.g. BOINC's per-app code-signing key); empty for
    a new app."""


@dataclass(frozen=True)
class WorkerContext:
    """What a worker backend may need to know of the volunteer that runs it."""

    app: str
    root: Path
    """A directory of the app's own on this volunteer (removed by the backend's close)."""
    address: str
    """The volunteer's address as the coordinator reached it (link-local on a bare LAN)."""
    slots: int
    node: str
    sandbox: SandboxConfig | None = None
    """How the embedded backend confines tasks (the volunteer's [sandbox] settings);
    None: its defaults."""


def available_backends() -> tuple[str, ...]:
    """The backends this machine can serve, ``embedded`` first. Cheap: checks files only,
    and loads no backend (an idle daemon asks)."""
    from bonjourgrid.ce_backends.boinc.executable import boinc_executable
    from bonjourgrid.ce_backends.condor.installation import find

    found = ["embedded"]
    if find() is not None:
        found.append("condor")
    if boinc_executable() is not None:
        found.append("boinc")
    return tuple(found)


def make_coordinator(backend: str, ctx: CoordinatorContext) -> CoordinatorBackend:
    """The coordinator side of ``backend`` for one app; ValueError for an unknown one."""
    made: CoordinatorBackend
    if backend == "embedded":
        from bonjourgrid.ce_backends.embedded.coordinator import EmbeddedCoordinator

        made = EmbeddedCoordinator(ctx.app)
    elif backend == "condor":
        from bonjourgrid.ce_backends.condor.coordinator import CondorCoordinator

        made = CondorCoordinator.from_context(ctx)
    elif backend == "boinc":
        from bonjourgrid.ce_backends.boinc.coordinator import BoincCoordinator

        made = BoincCoordinator(ctx)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return made


def make_worker(backend: str, ctx: WorkerContext) -> WorkerBackend:
    """The worker side of ``backend`` for one reservation; ValueError for an unknown one."""
    if backend == "embedded":
        from bonjourgrid.ce_backends.embedded.worker import EmbeddedWorker

        if ctx.sandbox is None:
            return EmbeddedWorker(ctx.app, ctx.root, slots=ctx.slots)
        return EmbeddedWorker(ctx.app, ctx.root, ctx.sandbox, slots=ctx.slots)
    if backend == "condor":
        from bonjourgrid.ce_backends.condor.worker import CondorWorker

        return CondorWorker(ctx.app, ctx.root, address=ctx.address, cpus=ctx.slots)
    if backend == "boinc":
        from bonjourgrid.ce_backends.boinc.worker import BoincWorker

        worker: WorkerBackend = BoincWorker(ctx)
        return worker
    raise ValueError(f"unknown backend {backend!r}")


__all__ = [
    "AppView",
    "BackendResult",
    "CoordinatorContext",
    "WorkerContext",
    "available_backends",
    "make_coordinator",
    "make_worker",
]
