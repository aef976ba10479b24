"""Sans-IO protocol engines (h11's shape): events in, actions out, time passed in.

No module here imports asyncio, time, socket or the filesystem (tests/engine checks it): the
daemon and the simulation run the same engines, each in its own thin shell:

* ``ReplicaEngine`` (replica.py, events in replica_events.py): a replica's suspicion,
  waiting, ask-first step, ballot and votes.
* ``AppEngine`` (app.py, events in app_events.py): one app's coordinator — placement
  (placement.py), recruitment and release (scheduling.py, matchmaking.py, fairshare.py,
  waiting.py), the attempts ledger (ledger.py), commit on ``W`` copies (replica_set.py,
  policy.py), step-down, takeover reconciliation. Import its names from
  ``bonjourgrid.engine.app`` / ``bonjourgrid.engine.app_events`` (``Tick``/``Note`` exist in
  both engines' event modules).
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
