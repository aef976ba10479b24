"""Moved to ``bonjourgrid.engine.scheduling`` (the sans-IO engine uses it; issue 13): re-exported
here for the importers that still name this module."""

from __future__ import annotations

from bonjourgrid.engine.scheduling import (
    WorkerSlots,
    choose_replicas,
    place,
    releasable,
    spread,
    to_ask,
    wanted_workers,
)

__all__ = [
    "WorkerSlots",
    "choose_replicas",
    "place",
    "releasable",
    "spread",
    "to_ask",
    "wanted_workers",
]
