"""The replica engine: one app's standby copy on one machine deciding when and how to take
over. Sans-IO (h11's shape): events in (``replica_events``), actions out, time passed in.
The daemon (daemon/election.py) and the simulation (sim/replica.py) both run it.

Theory of operation::

    WATCHING --suspicion--> ASKING --nobody coordinates--> WAITING --due--> [rank > 0: ASKING
       ^  (2 heartbeats       (AppQuery to the coordinator,   (suspect_after       the better-
       |   between tries)      other records, better ranks)    + rank * stagger;    ranked again]
       |                                                        no suspect_after    --> BALLOT
       +---- heard from the coordinator / someone coordinates / ballot lost ---------+   |
                                                                      won: CLAIMED <-----+
    "ended elsewhere" (or coordinated elsewhere, this machine no longer serving): FORGOTTEN

* **Suspicion** (DESIGN.md: mDNS for presence, heartbeats for liveness): the coordinator's
  ``_bjg-coord`` record, once seen here, left the mDNS view (a goodbye with no "app ended"
  before it); this machine no longer serves the app; the channel to the coordinator closed;
  or the coordinator was silent for more than ``suspect_after``.
* **Ask first**: a suspicion is checked before anyone acts — the coordinator, every other
  coordinator record of the app and the better-ranked replicas get an ``AppQuery``; one
  answering "I coordinate it" with our term or higher ends the matter, one holding the app
  ended and complete makes this copy ``Forget``.
* **One waiting rule**: the replica of rank ``r`` (its place in the replica set, best
  first; a non-member counts as last) asks for votes once the coordinator has been silent
  for ``suspect_after + r * takeover_stagger`` — without the ``suspect_after`` after a goodbye
  seen by this replica (an explicit "I am gone" needs no silence; its voters, seeing the
  goodbye in their own view, grant without it too). Hearing the coordinator meanwhile ends
  the try. A replica of rank ``r > 0`` asks the better-ranked ones again before its ballot.
* **Ballot** (faulttolerance/quorum.py): vote for oneself in the next term
  (``Voter.candidacy``, past any term a refusal told), ask every other member of every set in
  force, claim with ``Members.won``; lost when every member answered without a win, or after
  ``connect_timeout``; a later try waits two heartbeats.
* **Voting** (``Voter.vote``): one grant per term, to a journal at least as advanced, only
  after ``suspect_after`` of silence here (none after a goodbye seen here); a grant is
  persisted (``PersistVote``) before the answer (``SendVote``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from bonjourgrid.control.messages import AppQuery, Vote, VoteRequest
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
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter


@dataclass(frozen=True)
class Timing:
    """The engine's timings (``bonjourgrid.config.Config`` has them by the same names)."""

    suspect_after: float
    """Silence after which the coordinator is suspected, and a voter grants."""
    takeover_stagger: float
    """Extra wait per election rank, so the best live replica asks first."""
    heartbeat_interval: float
    """Tries are two heartbeats apart."""
    ping_timeout: float
    """How long an ``AppQuery`` waits for its answers."""
    connect_timeout: float
    """How long a ballot waits for its votes."""

    @classmethod
    def of(cls, config: _Timings) -> Timing:
        """The timings of a ``bonjourgrid.config.Config`` (or anything with those fields)."""
        return cls(
            config.suspect_after,
            config.takeover_stagger,
            config.heartbeat_interval,
            config.ping_timeout,
            config.connect_timeout,
        )


class _Timings(Protocol):
    @property
    def suspect_after(self) -> float: ...
    @property
    def takeover_stagger(self) -> float: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def ping_timeout(self) -> float: ...
    @property
    def connect_timeout(self) -> float: ...


class Phase(Enum):
    WATCHING = "watching"
    ASKING = "asking"
    """First ``AppQuery`` round: does anyone coordinate the app?"""
    WAITING = "waiting"
    """Nobody does: waiting out ``suspect_after + rank * stagger`` of silence."""
    ASKING_BETTER = "asking-better"
    """Rank > 0: the better-ranked replicas are asked again before the ballot."""
    BALLOT = "ballot"
    CLAIMED = "claimed"
    FORGOTTEN = "forgotten"


_DONE = (Phase.CLAIMED, Phase.FORGOTTEN)


class ReplicaEngine:
    """One app's replica on one machine (``me``). ``voter``, ``position``, ``members`` and
    ``coordinator`` describe the copy the shell holds at ``now``; ``term`` is the term its
    role follows. Feed events with ``handle``; carry out the returned actions in order."""

    def __init__(
        self,
        *,
        app: str,
        me: str,
        timing: Timing,
        now: float,
        coordinator: str,
        voter: Voter | None = None,
        position: Position | None = None,
        members: Members | None = None,
        term: int = 0,
    ) -> None:
        self.app = app
        self.me = me
        self.timing = timing
        self.coordinator = coordinator
        self.voter = voter or Voter()
        self.position = position or Position(0, 0, 0)
        self.members = members or Members()
        self.term = term
        self.last_heard = now
        self.linked = True
        self.serving = True
        self.phase = Phase.WATCHING
        self.reason = ""
        """Why the current try started (a suspicion), "" while watching."""
        self._records: set[str] = set()
        """Nodes whose coordinator record of the app is in the mDNS view now."""
        self._seen: set[str] = set()
        """Nodes whose coordinator record of the app was ever seen here."""
        self._last_try = -math.inf
        self._now = now
        """The latest time an event told (answers carry none)."""
        self._since = now
        """When the current phase began."""
        self._heard_at_try = now
        self._waiting_for: set[str] = set()
        """Peers whose answer the current ask still waits for."""
        self._verdict = ""
        """What the current ask learnt: "", "ended", or who coordinates the app."""
        self._ballot = 0
        self._grants: set[str] = set()
        self._refusals: list[str] = []
        self._above = 0
        """The highest term a voter refused us with: the next candidacy goes past it."""

    # --- what the shell may read ---------------------------------------------------------

    @property
    def done(self) -> bool:
        """Claimed or forgotten: this engine decides nothing more."""
        return self.phase in _DONE

    @property
    def campaigning(self) -> bool:
        return self.phase is Phase.BALLOT

    @property
    def rank(self) -> int:
        """This replica's election rank: its place in the set, best first (last if absent)."""
        ranked = self.members.everyone()
        return ranked.index(self.me) if self.me in ranked else len(ranked)

    @property
    def records(self) -> frozenset[str]:
        """Nodes whose coordinator record of the app is in this machine's view (as told)."""
        return frozenset(self._records)

    def goodbye(self) -> bool:
        """Whether the coordinator's record, once seen here, has left the mDNS view."""
        return self.coordinator in self._seen and self.coordinator not in self._records

    def silent_for(self, now: float) -> float:
        """How long the coordinator has been silent here (for ever when not serving it)."""
        return now - self.last_heard if self.serving else math.inf

    def accepts(self, term: int, coordinator: str) -> bool:
        """Whether a stream message of ``term`` from ``coordinator`` may be taken."""
        return self.voter.accepts(term, coordinator)

    def suspicion(self, now: float) -> str:
        """Why the coordinator is suspected at ``now``, "" if it is not."""
        if self.goodbye():
            return "the coordinator's record said goodbye"
        if not self.serving:
            return "this machine no longer serves the app"
        if not self.linked:
            return "the channel to the coordinator closed"
        if now - self.last_heard > self.timing.suspect_after:
            return f"the coordinator was silent for more than {self.timing.suspect_after:g} s"
        return ""

    def due_after(self) -> float:
        """The silence after which this replica asks for votes (the one waiting rule)."""
        wait = 0.0 if self.goodbye() else self.timing.suspect_after
        return wait + self.rank * self.timing.takeover_stagger

    # --- events ----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; the actions to carry out, in order."""
        if isinstance(event, (Tick, CoordinatorHeard, VoteRequested)):
            self._now = max(self._now, event.now)
        if isinstance(event, VoteRequested):
            return self._vote(event)
        if self.done:
            return []
        if isinstance(event, Tick):
            return self._tick(event.now)
        if isinstance(event, CoordinatorHeard):
            return self._heard(event.now)
        if isinstance(event, CoordinatorRecordSeen):
            self._records.add(event.node)
            self._seen.add(event.node)
        elif isinstance(event, CoordinatorRecordGone):
            self._records.discard(event.node)
        elif isinstance(event, LinkClosed):
            self.linked = False
        elif isinstance(event, LinkOpened):
            self.linked = True
        elif isinstance(event, ServingChanged):
            self.serving = event.serving
        elif isinstance(event, Followed):
            self._followed(event)
        elif isinstance(event, AppStateAnswer):
            return self._app_state(event)
        elif isinstance(event, VoteAnswer):
            return self._vote_answer(event)
        elif isinstance(event, PeerSilent):
            return self._silent(event.peer)
        return []

    def _heard(self, now: float) -> list[Action]:
        if now <= self.last_heard:
            return []
        self.last_heard = now
        if self.phase in (Phase.WAITING, Phase.ASKING_BETTER, Phase.BALLOT):
            text = f"app {self.app}: heard from the coordinator; no takeover"
            self._back_to_watching(now)
            return [Note(text)]
        return []

    def _followed(self, e: Followed) -> None:
        self.voter = self.voter.follow(e.term, e.coordinator)
        self.term = max(self.term, e.term)
        if e.coordinator != self.coordinator:
            self.coordinator = e.coordinator
        self.position = e.position
        self.members = e.members

    def _back_to_watching(self, now: float) -> None:
        self.phase, self.reason, self._since = Phase.WATCHING, "", now
        self._waiting_for = set()
        self._ballot = 0

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase, self._since = phase, now

    # --- the try: suspicion, ask first, wait, ask the better-ranked, ballot ------------------

    def _tick(self, now: float) -> list[Action]:
        t = self.timing
        if self.phase is Phase.WATCHING:
            reason = self.suspicion(now)
            if not reason or now - self._last_try < 2 * t.heartbeat_interval:
                return []
            self._last_try, self.reason, self._heard_at_try = now, reason, self.last_heard
            out: list[Action] = [
                Note(f"app {self.app}: coordinator {self.coordinator} suspected: {reason}")
            ]
            return out + self._ask(Phase.ASKING, self._peers(better_only=False), now)
        if self.phase in (Phase.ASKING, Phase.ASKING_BETTER):
            if now - self._since >= t.ping_timeout:
                self._waiting_for = set()
                return self._asked(now)
            return []
        if self.phase is Phase.WAITING:
            return self._wait(now)
        if self.phase is Phase.BALLOT and now - self._since >= t.connect_timeout:
            self._waiting_for = set()
            return self._count(now, over=True)
        return []

    def _peers(self, *, better_only: bool) -> tuple[str, ...]:
        """Who might coordinate the app: other coordinator records of it, the replicas ranked
        before this one, and (first round) its coordinator."""
        out = [n for n in sorted(self._records) if n != self.me]
        ranked = self.members.everyone()
        wanted = list(ranked[: ranked.index(self.me)] if self.me in ranked else ranked)
        if not better_only:
            wanted.append(self.coordinator)
        for n in wanted:
            if n != self.me and n not in out:
                out.append(n)
        return tuple(out)

    def _ask(self, phase: Phase, peers: tuple[str, ...], now: float) -> list[Action]:
        self._enter(phase, now)
        self._waiting_for = set(peers)
        self._verdict = ""
        if not peers:
            return self._asked(now)
        return [AskCoordinates(peers, AppQuery(self.app))]

    def _app_state(self, a: AppStateAnswer) -> list[Action]:
        if self.phase not in (Phase.ASKING, Phase.ASKING_BETTER) or a.peer not in self._waiting_for:
            return []
        self._waiting_for.discard(a.peer)
        if a.complete:
            self._verdict = "ended"
        elif a.coordinating and a.term >= self.term and self._verdict != "ended":
            self._verdict = f"{a.peer} coordinates it with term {a.term}"
        if self._waiting_for:
            return []
        return self._asked(self._now)

    def _silent(self, peer: str) -> list[Action]:
        if peer not in self._waiting_for:
            return []
        self._waiting_for.discard(peer)
        if self._waiting_for:
            return []
        if self.phase in (Phase.ASKING, Phase.ASKING_BETTER):
            return self._asked(self._now)
        if self.phase is Phase.BALLOT:
            return self._count(self._now, over=True)
        return []

    def _asked(self, now: float) -> list[Action]:
        """Every peer of the ask answered (or the ask timed out): what next."""
        verdict, phase = self._verdict, self.phase
        if verdict == "ended":
            self.phase = Phase.FORGOTTEN
            return [Forget(f"app {self.app} ended elsewhere; this replica's copy is dropped")]
        if verdict:
            if phase is Phase.ASKING and not self.serving:
                self.phase = Phase.FORGOTTEN
                return [Forget(f"app {self.app}: {verdict}; this copy is dropped")]
            self._back_to_watching(now)
            return [Note(f"app {self.app}: {verdict}")]
        if phase is Phase.ASKING:
            self._enter(Phase.WAITING, now)
            return self._wait(now)
        return self._ballot_start(now)

    def _wait(self, now: float) -> list[Action]:
        if self.serving and self.last_heard > self._heard_at_try:
            self._back_to_watching(now)
            return [Note(f"app {self.app}: the coordinator spoke meanwhile")]
        if self.silent_for(now) < self.due_after():
            return []
        if self.rank:
            return self._ask(Phase.ASKING_BETTER, self._peers(better_only=True), now)
        return self._ballot_start(now)

    def _ballot_start(self, now: float) -> list[Action]:
        if self.me not in self.members.everyone():
            self._back_to_watching(now)
            return [Note(f"app {self.app}: not a member of its replica set; no candidacy")]
        self.voter, term = self.voter.candidacy(self._above)
        self._enter(Phase.BALLOT, now)
        self._ballot, self._grants, self._refusals = term, {self.me}, []
        pos = self.position
        req = VoteRequest(self.app, term, self.me, pos.seq, pos.term, pos.members)
        peers = tuple(n for n in self.members.everyone() if n != self.me)
        self._waiting_for = set(peers)
        out: list[Action] = [PersistVote(self.voter)]
        if peers:
            out.append(RequestVotes(term, req, peers))
        return out + self._count(now, over=not peers)

    def _vote_answer(self, v: VoteAnswer) -> list[Action]:
        if self.phase is not Phase.BALLOT or v.peer not in self._waiting_for:
            return []
        self._waiting_for.discard(v.peer)
        if v.granted and v.term == self._ballot:
            self._grants.add(v.peer)
        else:
            if v.term >= self._ballot:
                self._above = max(self._above, v.term)
            self._refusals.append(f"{v.peer}: {v.reason or 'refused'}")
        return self._count(self._now, over=not self._waiting_for)

    def _count(self, now: float, *, over: bool) -> list[Action]:
        term = self._ballot
        if self.members.won(self._grants):
            self.phase = Phase.CLAIMED
            self.voter = self.voter.follow(term, self.me)
            self.term = term
            text = f"app {self.app}: elected for term {term} by {sorted(self._grants)}"
            return [Note(text, warning=True), Claim(term)]
        if not over:
            return []
        silent = [f"{n}: silent" for n in sorted(self._waiting_for)]
        sets = "/".join(str(len(s)) for s in self.members.sets())
        why = "; ".join(self._refusals + silent) or "no other member"
        text = f"app {self.app}: no quorum for term {term} ({len(self._grants)} of {sets}): {why}"
        self._back_to_watching(now)
        return [Note(text)]

    # --- voting ------------------------------------------------------------------------------

    def _vote(self, e: VoteRequested) -> list[Action]:
        req = e.request
        if self.phase is Phase.FORGOTTEN:
            return [SendVote(Vote(self.app, self.voter.latest(), False, "this copy is dropped"))]
        if self.phase is Phase.CLAIMED:
            return [SendVote(Vote(self.app, self.term, False, "I coordinate it"))]
        silent = math.inf if self.goodbye() else self.silent_for(e.now)
        voter, why = self.voter.vote(
            term=req.term,
            candidate=req.candidate,
            theirs=Position(req.last_term, req.seq, req.members),
            mine=self.position,
            silent_for=silent,
            suspect_after=self.timing.suspect_after,
            campaigning=self.campaigning,
        )
        out: list[Action] = []
        if not why:
            self.voter = voter
            self.term = max(self.term, req.term)
            out.append(PersistVote(voter, req.term))
            out.append(Note(f"app {self.app}: voted for {req.candidate} in term {req.term}"))
            if self.campaigning and self._ballot <= req.term:
                self._back_to_watching(e.now)  # our candidacy is behind a granted term
        vote = Vote(self.app, max(self.term, self.voter.latest()), not why, why)
        return [*out, SendVote(vote)]
