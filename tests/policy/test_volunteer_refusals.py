"""A volunteer refuses a reservation while its owner is busy, and an app its trust list
does not cover; it accepts a trusted app and then stages only the signed bundle."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.ce_key import CEKey
from bonjourgrid.app.signing import TrustList, UserKey, sign_app
from bonjourgrid.config import Config
from bonjourgrid.control.messages import Release, Reserve, ReserveReply, StageAck, StageApp
from bonjourgrid.daemon.hostinfo import HostInfo
from bonjourgrid.daemon.volunteer_agent import VolunteerAgent

ALICE, MALLORY = UserKey.generate("alice"), UserKey.generate("mallory")
SPEC: dict[str, object] = {"name": "x", "tasks": [{"id": "t", "command": "true"}]}
BUNDLE = b""
HOST = HostInfo("n1", "pc-1", 2, 2, 1024, "linux", "x86_64", ("embedded",))


class FakeChannel:
    """The coordinator's end: scripted messages in, everything the volunteer sends kept."""

    local_address = "127.0.0.1"
    peer_node = "c1"
    peer_address = ("127.0.0.1", 7000)

    def __init__(self, incoming: list[object]) -> None:
        self.sent: list[object] = []
        self._incoming = incoming

    async def send(self, msg: object) -> None:
        self.sent.append(msg)

    async def recv(self) -> object:
        return self._incoming.pop(0)

    async def close(self) -> None:
        pass


def agent(tmp_path: Path, trusted: TrustList | None) -> VolunteerAgent:
    async def nothing() -> None:
        pass

    return VolunteerAgent(
        host=HOST,
        config=Config.fast(),
        work_dir=tmp_path / "work",
        reservation_log=tmp_path / "reservations.jsonl",
        on_state_change=nothing,
        trusted=trusted,
    )


CE = CEKey.generate()


def reserve(key: UserKey | None, bundle_sha: str = sha256_hex(BUNDLE)) -> Reserve:
    sig = sign_app(key, "app-1", bundle_sha, SPEC, CE.public).encode() if key else ""
    return Reserve(
        "app-1", "c1", "coord", 1, 8.0, "embedded",
        user=key.user if key else "", signature=sig, bundle_sha256=bundle_sha, spec=SPEC,
        ce_key=CE.public.hex(), proof=CE.prove("app-1", 1, "c1", HOST.node_id),
    )  # fmt: skip


def answer(a: VolunteerAgent, first: Reserve, *then: object) -> list[object]:
    ch = FakeChannel([*then, Release("app-1", 1, "done")])
    asyncio.run(a.serve(ch, first))  # type: ignore[arg-type]
    return ch.sent


def test_an_owner_busy_machine_refuses_reservations(tmp_path: Path) -> None:
    a = agent(tmp_path, None)
    a.owner_busy = True
    (reply,) = answer(a, reserve(None))
    assert isinstance(reply, ReserveReply) and not reply.accepted
    assert "owner" in reply.reason
    assert a.state == "idle"


def test_an_untrusted_signer_is_refused_with_the_reason(tmp_path: Path) -> None:
    a = agent(tmp_path, TrustList.parse([ALICE.public.dumps()]))
    (reply,) = answer(a, reserve(MALLORY))
    assert isinstance(reply, ReserveReply) and not reply.accepted
    assert "mallory" in reply.reason and "not in trusted_users" in reply.reason
    (reply,) = answer(a, reserve(None))
    assert isinstance(reply, ReserveReply) and "not signed" in reply.reason


def test_without_a_trust_list_any_app_is_accepted(tmp_path: Path) -> None:
    a = agent(tmp_path, None)
    sent = answer(a, reserve(None))
    assert isinstance(sent[0], ReserveReply) and sent[0].accepted


def test_a_trusted_app_is_accepted_and_only_its_signed_bundle_staged(tmp_path: Path) -> None:
    a = agent(tmp_path, TrustList.parse([ALICE.public.fingerprint]))
    other = b"not the signed bundle"
    sent = answer(a, reserve(ALICE), StageApp("app-1", 1, sha256_hex(other), other))
    assert isinstance(sent[0], ReserveReply) and sent[0].accepted
    ack = next(m for m in sent if isinstance(m, StageAck))
    assert not ack.ok and "signature" in ack.error
