"""Request proofs (app/request_proof.py): only the submitter's key, fresh, once, for one
action on one app through one node."""

from __future__ import annotations

import json

import pytest

from bonjourgrid.app.request_proof import (
    FRESHNESS,
    NonceCache,
    ProofError,
    ProofRefused,
    RequestProof,
    make_proof,
    verify_proof,
)
from bonjourgrid.app.signing import UserKey

ALICE = UserKey.generate("alice")
MALLORY = UserKey.generate("mallory")
NOW = 1_700_000_000.0


def _verify(text: str, *, seen: NonceCache | None = None, **kw: object) -> RequestProof:
    args: dict[str, object] = {
        "submitter": ALICE.public.raw,
        "action": "results",
        "app": "a1b2c3d4",
        "node": "node0001",
        "now": NOW,
        "seen": seen if seen is not None else NonceCache(),
    }
    args.update(kw)
    return verify_proof(text, **args)  # type: ignore[arg-type]


def _proof(key: UserKey = ALICE, action: str = "results", **kw: object) -> str:
    args: dict[str, object] = {"app": "a1b2c3d4", "node": "node0001", "now": NOW}
    args.update(kw)
    return make_proof(key, action, **args).encode()  # type: ignore[arg-type]


def test_the_submitters_fresh_proof_is_accepted_and_round_trips() -> None:
    text = _proof()
    p = _verify(text)
    assert (p.action, p.app, p.node) == ("results", "a1b2c3d4", "node0001")
    assert RequestProof.decode(text) == p
    assert p.fingerprint == ALICE.public.fingerprint


def test_another_users_key_is_refused() -> None:
    with pytest.raises(ProofRefused, match="signed by key"):
        _verify(_proof(MALLORY))


def test_a_forged_signature_claiming_the_submitters_fingerprint_is_refused() -> None:
    d = json.loads(_proof(MALLORY))
    d["fingerprint"] = ALICE.public.fingerprint
    with pytest.raises(ProofRefused, match="a forged proof"):
        _verify(json.dumps(d))


def test_no_proof_is_refused() -> None:
    with pytest.raises(ProofRefused, match="no proof came"):
        _verify("")


def test_a_replayed_proof_is_refused_the_second_time() -> None:
    seen = NonceCache()
    text = _proof()
    _verify(text, seen=seen)
    with pytest.raises(ProofRefused, match="replay"):
        _verify(text, seen=seen, now=NOW + 1)


def test_a_proof_for_another_action_app_or_node_is_refused() -> None:
    with pytest.raises(ProofRefused, match="not cancel"):
        _verify(_proof(), action="cancel")
    with pytest.raises(ProofRefused, match="not results of ffff0000"):
        _verify(_proof(), app="ffff0000")
    with pytest.raises(ProofRefused, match="carried it"):
        _verify(_proof(), node="rogue001")


def test_changing_any_signed_field_breaks_the_proof() -> None:
    for key, value in (("app", "ffff0000"), ("node", "rogue001"), ("issued", NOW + 5),
                       ("nonce", "0" * 32), ("action", "cancel")):  # fmt: skip
        d = json.loads(_proof())
        d[key] = value
        with pytest.raises(ProofRefused, match="forged"):
            _verify(json.dumps(d), app=d["app"], node=d["node"], action=d["action"])


def test_stale_and_future_proofs_are_refused() -> None:
    with pytest.raises(ProofRefused, match="stale"):
        _verify(_proof(now=NOW - FRESHNESS - 1))
    with pytest.raises(ProofRefused, match="stale"):
        _verify(_proof(now=NOW + FRESHNESS + 1))
    _verify(_proof(now=NOW - FRESHNESS + 1))


@pytest.mark.parametrize(
    "blob",
    ["{", "[]", '{"v":2}', json.dumps({"v": 1, "action": "results"}), "x" * 5000],
)
def test_malformed_proofs_are_refused_with_a_reason(blob: str) -> None:
    with pytest.raises(ProofRefused, match="request proof"):
        _verify(blob)


def test_decode_refuses_bad_nonce_and_non_numeric_time() -> None:
    d = json.loads(_proof())
    for key, value in (("nonce", "../x"), ("issued", True), ("issued", "soon")):
        bad = {**d, key: value}
        with pytest.raises(ProofError):
            RequestProof.decode(json.dumps(bad))


def test_the_nonce_cache_forgets_stale_nonces_and_refuses_when_full() -> None:
    seen = NonceCache(window=10.0, capacity=2)
    assert seen.add("a" * 32, NOW, NOW)
    assert seen.add("b" * 32, NOW, NOW)
    assert not seen.add("c" * 32, NOW, NOW), "a full cache must refuse, not forget"
    assert not seen.add("a" * 32, NOW, NOW + 1)
    assert seen.add("c" * 32, NOW + 11, NOW + 11), "stale nonces are pruned"
    assert len(seen) == 1


def test_unknown_actions_cannot_be_made() -> None:
    with pytest.raises(ValueError):
        make_proof(ALICE, "delete", "a1b2c3d4", "node0001", now=NOW)
