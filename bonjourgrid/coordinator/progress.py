"""An app's progress as its coordinator sees it: what ``bjgrid submit`` follows and ``status``
shows. The daemon carries it to the CLI as a local ``Progress`` message
(daemon/local_messages.py), so the coordinator does not import the daemon."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AppProgress:
    app: str
    name: str
    role: str
    counts: dict[str, object]
    workers: int
    ended: bool
    outcome: str
    reason: str
    waiting: str = ""
    """While tasks wait for a volunteer nobody can match: which requirement nobody meets;
    "" otherwise."""


__all__ = ["AppProgress"]
