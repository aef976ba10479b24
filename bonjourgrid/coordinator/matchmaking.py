"""Moved to ``bonjourgrid.engine.matchmaking`` (the sans-IO engine uses it; issue 13): re-exported
here for the importers that still name this module."""

from __future__ import annotations

from bonjourgrid.engine.matchmaking import (
    Offer,
    _attribute_check,
    _capacity,
    _checks,
    candidates,
    capable,
    fit_rows,
    fits,
    has_attributes,
    rank,
    unmet,
    waiting_reason,
)

__all__ = [
    "Offer",
    "_attribute_check",
    "_capacity",
    "_checks",
    "candidates",
    "capable",
    "fit_rows",
    "fits",
    "has_attributes",
    "rank",
    "unmet",
    "waiting_reason",
]
