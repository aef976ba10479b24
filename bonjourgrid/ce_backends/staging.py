"""Staging an app's bundle on a recruit: the first step of every backend (the embedded farm
runs tasks from it; HTCondor and BOINC workers keep nothing else, their middleware moves each
job's files). One place all three backends use, so no backend imports another."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bonjourgrid.control.messages import StageAck, StageApp

if TYPE_CHECKING:
    from bonjourgrid.ce_backends.base import WorkerHandle
    from bonjourgrid.ce_backends.registry import AppView

STAGE_TIMEOUT_BASE = 30.0
"""Seconds to stage an app bundle, plus one per MiB (a 100 Mbit/s LAN moves ~10 MiB/s)."""


async def stage_app(app: AppView, worker: WorkerHandle) -> None:
    """Send the app's bundle to a recruit and wait for its ack: the volunteer checks it against
    the signed checksum and turns Worker. Raises if refused."""
    await worker.send(StageApp(app.app_id, app.term, app.bundle_sha, app.bundle))
    ack = await worker.expect(StageAck, STAGE_TIMEOUT_BASE + len(app.bundle) / 2**20)
    assert isinstance(ack, StageAck)
    if not ack.ok:
        raise RuntimeError(f"staging refused: {ack.error}")


__all__ = ["STAGE_TIMEOUT_BASE", "stage_app"]
