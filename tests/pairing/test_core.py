"""The pure pairing core: codes, frames, the two session machines, an invitation's rules."""

from __future__ import annotations

import pytest

from bonjourgrid.pairing.code import Code, CodeError, parse_code
from bonjourgrid.pairing.frames import Decoder, Frame, FrameError, Kind, encode
from bonjourgrid.pairing.session import (
    Invitation,
    InviterSession,
    JoinerSession,
    PairingError,
    Step,
)
from bonjourgrid.pairing.words import WORDS

SECRET = bytes(range(32))


def test_codes_round_trip_and_parse_as_people_type_them() -> None:
    assert len(WORDS) == len(set(WORDS)) == 256
    code = Code.generate()
    assert parse_code(str(code)) == code
    assert parse_code("  7 Guitar-otter  MAPLE ") == Code(7, ("guitar", "otter", "maple"))


@pytest.mark.parametrize(
    ("text", "field"),
    [("", "a number and 3 words"), ("x-guitar-otter-maple", "starts with a number"),
     ("0-guitar-otter-maple", "1..999"), ("7-guitar-otter-mapel", "'mapel'"),
     ("7-guitar-otter", "3 words")],
)  # fmt: skip
def test_a_malformed_code_says_what_is_wrong(text: str, field: str) -> None:
    with pytest.raises(CodeError, match=field):
        parse_code(text)


def test_frames_decode_in_pieces_and_refuse_oversize_or_unknown() -> None:
    data = encode(Frame(Kind.CONFIRM, b"x" * 32)) * 2
    d = Decoder()
    got = [f for b in data for f in d.feed(bytes([b]))]
    assert [f.kind for f in got] == [Kind.CONFIRM, Kind.CONFIRM]
    with pytest.raises(FrameError, match="unknown frame type"):
        Decoder().feed(b"\x09\x00\x01x")
    with pytest.raises(FrameError, match="CONFIRM frame of 65535"):
        Decoder().feed(b"\x03\xff\xff")


def _run(joiner_code: Code, inviter_code: Code) -> tuple[JoinerSession, InviterSession]:
    j, i = JoinerSession(joiner_code), InviterSession(inviter_code, SECRET)
    to_inviter = [j.start()]
    while to_inviter:
        to_joiner = [out for f in to_inviter for out in i.receive(f)]
        to_inviter = [out for f in to_joiner for out in j.receive(f)]
    return j, i


def test_the_same_code_hands_over_the_key() -> None:
    code = Code.generate()
    j, i = _run(code, code)
    assert j.step is Step.DONE and j.secret == SECRET
    assert i.outcome == "paired"


def test_a_wrong_code_gets_no_key_and_spends_a_guess() -> None:
    code = Code(7, ("guitar", "otter", "maple"))
    with pytest.raises(PairingError) as e:
        _run(Code(7, ("guitar", "otter", "melon")), code)
    assert e.value.wrong_code
    inv = Invitation(code, expires_at=100.0, max_wrong=3)
    session = InviterSession(code, SECRET)
    j = JoinerSession(Code(7, ("guitar", "otter", "melon")))
    reply = session.receive(j.start())
    confirm = j.receive(reply[0])
    assert session.receive(confirm[0])[0].kind is Kind.FAIL
    inv.settle(session)
    assert inv.wrong == 1 and inv.open


def test_an_invitation_works_once_expires_and_closes_after_the_guesses() -> None:
    code = Code.generate()
    inv = Invitation(code, expires_at=10.0, max_wrong=2)
    for _ in range(2):
        s = InviterSession(code, SECRET)
        s.guessed, s.outcome = True, "wrong code"
        inv.settle(s)
    assert not inv.open and inv.state == "closed after too many wrong codes"
    inv2 = Invitation(code, expires_at=10.0)
    inv2.tick(10.0)
    assert inv2.state == "expired"
    inv3 = Invitation(code, expires_at=10.0)
    _, s = _run(code, code)
    inv3.settle(s)
    assert inv3.state == "used" and not inv3.open


def test_a_session_out_of_order_fails() -> None:
    i = InviterSession(Code.generate(), SECRET)
    assert i.receive(Frame(Kind.CONFIRM, b"x" * 32))[0].kind is Kind.FAIL
    assert i.step is Step.FAILED and not i.guessed
