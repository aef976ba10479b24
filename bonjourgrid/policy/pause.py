"""The owner's manual hold (``bjgrid pause``), kept in the state dir so that it survives a
restart of the daemon (and a reboot): a pause holds until ``bjgrid resume``.

The file ``<state dir>/paused`` exists while the machine is paused; its one line says since
when (``paused since 2026-12-07T05:59:00Z``), for people reading the state dir. Only its
existence counts: content is never parsed. Written atomically (temporary file, rename), so a
crash leaves either the old state or the new one.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

PAUSE_FILE = "paused"


def pause_file(state_dir: Path) -> Path:
    return state_dir / PAUSE_FILE


def is_paused(state_dir: Path) -> bool:
    """Whether the owner paused this machine (and did not resume it since)."""
    return pause_file(state_dir).is_file()


def record(state_dir: Path, paused: bool) -> None:
    """Keep ``paused`` for the next start of the daemon. Raises OSError."""
    path = pause_file(state_dir)
    if not paused:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = path.with_name(f".{PAUSE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(f"paused since {now} (bjgrid resume lifts it)\n")
    os.replace(tmp, path)


__all__ = ["PAUSE_FILE", "is_paused", "pause_file", "record"]
