"""Sans-IO protocol engines (h11's shape): events in, actions out, time passed in.

No module here imports asyncio, time, socket or the filesystem (tests/engine checks it): the
daemon and the simulation run the same engines, each in its own thin shell. Today:
``ReplicaEngine`` (a replica's suspicion, waiting, ask-first step, ballot and votes).
"""

from __future__ import annotations

from bonjourgrid.engine.replica import Phase, ReplicaEngine, Timing
from bonjourgrid.engine.replica_events import (
    Action,
    AppStateAnswer,
    AskCoordinates,
    Claim,
    CoordinatorHeard,
    CoordinatorRecordGone,
    CoordinatorRecordSeen,
    Event,
    Followed,
    Forget,
    LinkClosed,
    LinkOpened,
    Note,
    PeerSilent,
    PersistVote,
    RequestVotes,
    SendVote,
    ServingChanged,
    Tick,
    VoteAnswer,
    VoteRequested,
)

__all__ = [
    "Action",
    "AppStateAnswer",
    "AskCoordinates",
    "Claim",
    "CoordinatorHeard",
    "CoordinatorRecordGone",
    "CoordinatorRecordSeen",
    "Event",
    "Followed",
    "Forget",
    "LinkClosed",
    "LinkOpened",
    "Note",
    "PeerSilent",
    "PersistVote",
    "Phase",
    "ReplicaEngine",
    "RequestVotes",
    "SendVote",
    "ServingChanged",
    "Tick",
    "Timing",
    "VoteAnswer",
    "VoteRequested",
]
