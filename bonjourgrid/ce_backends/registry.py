"""Which CE backends this machine can serve, and the worker side made for each reservation.

A volunteer advertises a backend in its TXT record (``b=``) only when it can really run it:
``embedded`` always; ``condor`` when HTCondor daemons are usable here (on PATH, or a rootfs
from scripts/setup-condor); ``boinc`` when Debian's ``boinc-client`` is installed. Coordinators
recruit for ``--backend X`` only machines that advertise X (coordinator/matchmaking.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bonjourgrid.ce_backends.base import WorkerBackend


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


def available_backends() -> tuple[str, ...]:
    """The backends this machine can serve, ``embedded`` first. Cheap: checks files only."""
    from bonjourgrid.ce_backends.boinc.client import boinc_executable
    from bonjourgrid.ce_backends.condor.worker import usable

    found = ["embedded"]
    if usable():
        found.append("condor")
    if boinc_executable() is not None:
        found.append("boinc")
    return tuple(found)


def make_worker(backend: str, ctx: WorkerContext) -> WorkerBackend:
    """The worker side of ``backend`` for one reservation; ValueError for an unknown one."""
    if backend == "embedded":
        from bonjourgrid.ce_backends.embedded.worker import EmbeddedWorker

        return EmbeddedWorker(ctx.app, ctx.root)
    if backend == "condor":
        from bonjourgrid.ce_backends.condor.worker import CondorWorker

        return CondorWorker(ctx.app, ctx.root, address=ctx.address, cpus=ctx.slots)
    if backend == "boinc":
        from bonjourgrid.ce_backends.boinc.worker import BoincWorker

        worker: WorkerBackend = BoincWorker(ctx)
        return worker
    raise ValueError(f"unknown backend {backend!r}")


__all__ = ["WorkerContext", "available_backends", "make_worker"]
