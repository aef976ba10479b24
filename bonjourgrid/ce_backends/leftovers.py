"""Middleware processes a crashed daemon left behind, found and stopped at the next start.

A backend that starts a long-lived process of its own (HTCondor's ``condor_master`` for a CE's
head or a worker's startd, a BOINC client) records it with :func:`record` in the directory it
owns. A clean stop removes that directory; a ``kill -9`` of the daemon does not, and the
process (in its own session) lives on. :func:`reap`, run when the daemon starts, stops every
recorded process that still runs — the same process, checked by its start time, never a
newer one that reused the PID — with all its descendants, then removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PIDS = ".bjgrid-pids"
"""One JSON object per line: {"pid": N, "started": psutil create_time}."""
_DEPTH = 4
"""How deep under a state directory a backend's own directory may be (apps/<id>/ce/head)."""


def record(owned_dir: Path, pid: int) -> None:
    """Remember that process ``pid`` belongs to ``owned_dir`` (removed when reaped)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        return
    owned_dir.mkdir(parents=True, exist_ok=True)
    with open(owned_dir / PIDS, "a") as f:
        f.write(json.dumps({"pid": pid, "started": started}) + "\n")


def reap(top: Path) -> list[int]:
    """Stop what crashed daemons left under ``top`` and remove their directories; the PIDs
    stopped. Never raises for one unreadable file or a process that is already gone."""
    stopped: list[int] = []
    if not top.is_dir():
        return stopped
    for depth in range(1, _DEPTH + 1):
        for pids in top.glob("/".join(["*"] * depth) + "/" + PIDS):
            stopped += _stop_recorded(pids)
            shutil.rmtree(pids.parent, ignore_errors=True)
            log.warning("removed %s, left by a daemon that did not stop cleanly", pids.parent)
    return stopped


def _stop_recorded(pids: Path) -> list[int]:
    stopped: list[int] = []
    try:
        lines = pids.read_text().splitlines()
    except OSError:
        return stopped
    for line in lines:
        try:
            entry = json.loads(line)
            proc = psutil.Process(int(entry["pid"]))
            if abs(proc.create_time() - float(entry["started"])) > 0.01:
                continue  # the PID was reused by another process
            family = [*proc.children(recursive=True), proc]
        except (ValueError, KeyError, TypeError, psutil.Error):
            continue
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(family, timeout=5)
        stopped.append(proc.pid)
        log.warning("stopped process %d (and %d below it), left running", proc.pid, len(family) - 1)
    return stopped


__all__ = ["PIDS", "reap", "record"]
