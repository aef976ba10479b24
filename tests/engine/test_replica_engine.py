"""The replica engine, h11 style: feed events at virtual times, assert the actions."""

from __future__ import annotations

import ast
from pathlib import Path

from bonjourgrid.control.messages import VoteRequest
from bonjourgrid.engine import (
    Action,
    AppStateAnswer,
    AskCoordinates,
    Claim,
    CoordinatorHeard,
    CoordinatorRecordGone,
    CoordinatorRecordSeen,
    Forget,
    LinkClosed,
    PeerSilent,
    PersistVote,
    Phase,
    ReplicaEngine,
    RequestVotes,
    SendVote,
    Tick,
    Timing,
    VoteAnswer,
    VoteRequested,
)
from bonjourgrid.faulttolerance.quorum import Members, Position, Voter

T = Timing(
    suspect_after=10.0,
    takeover_stagger=2.0,
    heartbeat_interval=0.5,
    ping_timeout=1.0,
    connect_timeout=3.0,
)
SET = Members(1, ("r0", "r1", "r2"))


def engine(me: str = "r0", members: Members = SET, now: float = 0.0) -> ReplicaEngine:
    return ReplicaEngine(
        app="app1",
        me=me,
        timing=T,
        now=now,
        coordinator="c",
        voter=Voter(1, "c", 1),
        position=Position(1, 5, members.version),
        members=members,
        term=1,
    )


def of(actions: list[Action], kind: type) -> list[object]:
    return [a for a in actions if isinstance(a, kind)]


def ask_nobody_coordinates(e: ReplicaEngine, now: float) -> list[Action]:
    """A suspicion at ``now``: the first ask, answered by silence from everyone."""
    out = e.handle(Tick(now))
    (ask,) = of(out, AskCoordinates)
    assert isinstance(ask, AskCoordinates)
    for p in ask.peers:
        out += e.handle(PeerSilent(p))
    return out


def test_a_replica_that_heard_a_goodbye_asks_for_votes_without_waiting_suspect_after() -> None:
    e = engine()
    e.handle(CoordinatorRecordSeen("c"))
    e.handle(CoordinatorHeard(1.0))
    e.handle(CoordinatorRecordGone("c"))
    out = ask_nobody_coordinates(e, 1.1)
    (req,) = of(out, RequestVotes)
    assert isinstance(req, RequestVotes)
    assert req.term == 2 and set(req.peers) == {"r1", "r2"}
    assert req.request == VoteRequest("app1", 2, "r0", 5, 1, 1)


def test_a_goodbye_never_seen_here_does_not_skip_suspect_after() -> None:
    e = engine()
    e.handle(CoordinatorRecordGone("c"))  # never seen: no goodbye of ours
    e.handle(LinkClosed())
    out = ask_nobody_coordinates(e, 1.0)
    assert of(out, RequestVotes) == []
    assert e.phase is Phase.WAITING
    assert of(e.handle(Tick(9.9)), RequestVotes) == []
    assert of(e.handle(Tick(10.0)), RequestVotes) != []


def test_a_silent_coordinator_is_suspected_only_after_suspect_after() -> None:
    e = engine()
    assert e.handle(Tick(10.0)) == []
    assert of(e.handle(Tick(10.01)), AskCoordinates) != []


def test_the_first_ask_goes_to_the_coordinator_other_records_and_better_ranks() -> None:
    e = engine(me="r2")
    e.handle(CoordinatorRecordSeen("c"))
    e.handle(CoordinatorRecordSeen("x"))
    e.handle(CoordinatorRecordGone("c"))
    (ask,) = of(e.handle(Tick(0.1)), AskCoordinates)
    assert isinstance(ask, AskCoordinates)
    assert ask.peers == ("x", "r0", "r1", "c")
    assert ask.query.app == "app1"


def test_rank_1_waits_one_stagger_longer_than_rank_0() -> None:
    due = {}
    for me in ("r0", "r1"):
        e = engine(me=me)
        ask_nobody_coordinates(e, 10.5)
        t = 10.5
        while e.phase is Phase.WAITING:
            t = round(t + 0.1, 1)
            out = e.handle(Tick(t))
            for a in of(out, AskCoordinates):  # rank 1 asks the better-ranked again
                assert isinstance(a, AskCoordinates) and a.peers == ("r0",)
                e.handle(PeerSilent("r0"))
        assert e.phase is Phase.BALLOT
        due[me] = t
    assert due["r0"] == 10.5  # already silent for suspect_after + 0 * stagger
    assert due["r1"] == 12.0  # suspect_after + 1 * stagger


def test_a_coordinator_answering_appquery_ends_the_suspicion() -> None:
    e = engine()
    (ask,) = of(e.handle(Tick(11.0)), AskCoordinates)
    assert isinstance(ask, AskCoordinates) and ask.peers == ("c",)
    out = e.handle(AppStateAnswer("c", 1, coordinating=True, complete=False))
    assert e.phase is Phase.WATCHING
    assert of(out, RequestVotes) == [] and of(out, Forget) == []
    assert of(e.handle(Tick(11.2)), AskCoordinates) == []  # a later try, not at once


def test_a_coordinator_of_an_older_term_does_not_end_the_suspicion() -> None:
    e = engine()
    e.handle(Tick(11.0))
    e.handle(AppStateAnswer("c", 0, coordinating=True, complete=False))
    assert e.phase in (Phase.WAITING, Phase.BALLOT)


def test_a_peer_holding_the_app_complete_makes_the_copy_forget() -> None:
    e = engine(me="r2")
    e.handle(Tick(11.0))  # asks r0, r1 and c
    out = e.handle(AppStateAnswer("r1", 1, coordinating=False, complete=True))
    out += e.handle(PeerSilent("r0"))
    out += e.handle(PeerSilent("c"))
    assert of(out, Forget) and e.done
    assert e.handle(Tick(30.0)) == []


def test_hearing_the_coordinator_while_waiting_ends_the_try() -> None:
    e = engine(me="r1")
    ask_nobody_coordinates(e, 10.5)
    assert e.phase is Phase.WAITING
    e.handle(CoordinatorHeard(11.0))
    assert e.phase is Phase.WATCHING
    assert of(e.handle(Tick(12.5)), RequestVotes) == []


def test_a_ballot_with_a_majority_claims_the_term() -> None:
    e = engine()
    out = ask_nobody_coordinates(e, 10.5)
    assert of(out, PersistVote) == [PersistVote(Voter(1, "c", 2))]  # own vote, saved first
    out = e.handle(VoteAnswer("r1", 2, granted=True))
    assert of(out, Claim) == [Claim(2)]
    assert e.voter == Voter(2, "r0", 2)


def test_a_ballot_without_a_majority_claims_nothing_and_goes_past_a_refusals_term() -> None:
    e = engine()
    ask_nobody_coordinates(e, 10.5)
    out = e.handle(VoteAnswer("r1", 4, granted=False, reason="already in term 4"))
    out += e.handle(PeerSilent("r2"))
    assert of(out, Claim) == [] and e.phase is Phase.WATCHING
    out = ask_nobody_coordinates(e, 11.5)  # two heartbeats later
    (req,) = of(out, RequestVotes)
    assert isinstance(req, RequestVotes) and req.term == 5


def test_a_ballot_gives_up_after_connect_timeout() -> None:
    e = engine()
    ask_nobody_coordinates(e, 10.5)
    assert e.handle(Tick(13.4)) == [] and e.phase is Phase.BALLOT
    e.handle(Tick(13.5))
    assert e.phase is Phase.WATCHING
    assert of(e.handle(VoteAnswer("r1", 2, granted=True)), Claim) == []  # too late


def test_a_lone_vote_in_a_set_of_three_never_claims() -> None:
    e = engine()
    ask_nobody_coordinates(e, 10.5)
    out = e.handle(VoteAnswer("r1", 2, granted=False))
    out += e.handle(VoteAnswer("r2", 2, granted=False))
    out += e.handle(VoteAnswer("r2", 2, granted=True))  # a duplicate that lies: ignored
    assert of(out, Claim) == []


def test_a_non_member_runs_no_candidacy() -> None:
    e = engine(me="z")
    out = e.handle(Tick(20.0))
    for p in ("r0", "r1", "r2", "c"):
        out += e.handle(PeerSilent(p))
    out += e.handle(Tick(20.0))
    assert of(out, RequestVotes) == [] and of(out, PersistVote) == []


def request(term: int, candidate: str = "r1", seq: int = 5) -> VoteRequested:
    return VoteRequested(20.0, VoteRequest("app1", term, candidate, seq, 1, 1))


def test_a_vote_is_granted_once_per_term() -> None:
    e = engine()
    out = e.handle(request(2, "r1"))
    assert of(out, PersistVote) == [PersistVote(Voter(2, "r1", 2), 2)]
    assert out.index(of(out, PersistVote)[0]) < out.index(of(out, SendVote)[0])
    (sent,) = of(out, SendVote)
    assert isinstance(sent, SendVote) and sent.vote.granted and sent.vote.term == 2
    (again,) = of(e.handle(request(2, "r2")), SendVote)
    assert isinstance(again, SendVote) and not again.vote.granted
    (same,) = of(e.handle(request(2, "r1")), SendVote)  # the same request again
    assert isinstance(same, SendVote) and same.vote.granted


def test_no_vote_while_the_coordinator_was_heard_within_suspect_after() -> None:
    e = engine()
    e.handle(CoordinatorHeard(15.0))
    (sent,) = of(e.handle(request(2)), SendVote)
    assert isinstance(sent, SendVote) and not sent.vote.granted
    assert "heard" in sent.vote.reason and of(e.handle(request(2)), PersistVote) == []


def test_a_goodbye_seen_here_lets_a_vote_through_without_silence() -> None:
    e = engine()
    e.handle(CoordinatorRecordSeen("c"))
    e.handle(CoordinatorHeard(19.0))
    e.handle(CoordinatorRecordGone("c"))
    (sent,) = of(e.handle(request(2)), SendVote)
    assert isinstance(sent, SendVote) and sent.vote.granted


def test_no_vote_for_a_journal_behind_this_one() -> None:
    e = engine()
    (sent,) = of(e.handle(request(2, seq=4)), SendVote)
    assert isinstance(sent, SendVote) and not sent.vote.granted
    assert "ahead" in sent.vote.reason


def test_granting_a_later_term_ends_this_replicas_own_ballot() -> None:
    e = engine()
    ask_nobody_coordinates(e, 10.5)  # campaigning for term 2
    (sent,) = of(e.handle(request(2, "r1")), SendVote)
    assert isinstance(sent, SendVote) and not sent.vote.granted  # campaigning in term 2
    (sent,) = of(e.handle(request(3, "r1")), SendVote)
    assert isinstance(sent, SendVote) and sent.vote.granted
    assert e.phase is Phase.WATCHING
    assert of(e.handle(VoteAnswer("r2", 2, granted=True)), Claim) == []


def test_the_first_member_added_alone_takes_over_while_the_change_is_joint() -> None:
    e = engine(members=Members(1, ("r0",), ()))
    out = ask_nobody_coordinates(e, 10.5)
    assert of(out, Claim) == [Claim(2)] and of(out, RequestVotes) == []


def test_the_engine_imports_no_asyncio_time_socket_or_filesystem() -> None:
    forbidden = {"asyncio", "time", "socket", "os", "pathlib", "io", "shutil", "threading"}
    root = Path(__file__).parents[2] / "bonjourgrid" / "engine"
    files = sorted(root.glob("*.py"))
    assert files
    for f in files:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{f.name} opens a file"
            for n in names:
                assert n.split(".")[0] not in forbidden, f"{f.name} imports {n}"
