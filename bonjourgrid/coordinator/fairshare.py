"""Moved to ``bonjourgrid.engine.fairshare`` (the sans-IO engine uses it; issue 13): re-exported
here for the importers that still name this module."""

from __future__ import annotations

from bonjourgrid.engine.fairshare import (
    Claim,
    choose_release,
    recruit_cap,
    release_count,
    share_of,
    shares,
    starving,
)

__all__ = [
    "Claim",
    "choose_release",
    "recruit_cap",
    "release_count",
    "share_of",
    "shares",
    "starving",
]
