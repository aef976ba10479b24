"""Signed applications: a user's Ed25519 key signs an app; a volunteer checks whom it trusts.

What is signed (``signed_payload``, version 2): a domain tag, then the canonical JSON (sorted
keys, no spaces, ASCII) of ``{"app", "bundle_sha256", "ce_key", "spec", "user"}``: the app id
(chosen by ``bjgrid submit`` before it signs), the bundle's checksum, the public half of the
app's CE key (app/ce_key.py: who may coordinate it), the app spec's JSON (``AppSpec.to_json()``:
every task's command, environment, outputs and requirements) and the user. So a changed file,
task, command or user name breaks the signature, and a signature replayed for another app id
or under another coordinator's key is refused.

The signature travels as an ``AppSignature`` (user name, key fingerprint, public key, app id,
CE public key, the 64-byte signature; ``encode()`` gives one compact JSON string). Version 1
signatures (no app id, no CE key) are refused: "signed by an older bjgrid; re-submit".

A volunteer with a ``trusted_users`` list (``TrustList``) accepts only apps signed by one of
those keys; entries are public-key lines as written by ``bjgrid keygen --user``
(``bjgrid-user-pub-v1 <user> <hex>``), bare public keys (64 hex digits) or fingerprints (32
hex digits). With no list, any app is accepted (unsigned ones too), but a signature that is
present must still be valid.

Key files: ``user.key`` (``bjgrid-user-key-v1 <user> <64 hex seed>``, mode 0600) and
``user.pub`` (the public line) in the user's config dir. Everything but ``write_user_key``
and ``load_user_key`` is pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bonjourgrid import curves

if TYPE_CHECKING:
    from bonjourgrid.app.spec import AppSpec

KEY_MAGIC = "bjgrid-user-key-v1"
PUB_MAGIC = "bjgrid-user-pub-v1"
USER_KEY_FILE = "user.key"
_DOMAIN = b"bjgrid app signature v2\0"
SIGNATURE_VERSION = 2
OLD_SIGNATURE = "signed by an older bjgrid (signature version 1); re-submit the app"
_FINGERPRINT_HEX = 32
"""128 bits: a fingerprint in a trust list must resist second preimages, not just typos."""
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")


class SigningError(Exception):
    """A key, trust entry or signature blob is malformed; the message says which."""


class SignatureRefused(Exception):
    """An app is refused by the volunteer's trust policy; ``reason`` is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(public_raw: bytes) -> str:
    return hashlib.sha256(b"bjgrid user key\0" + public_raw).hexdigest()[:_FINGERPRINT_HEX]


def _check_user(user: str, source: str) -> str:
    if not _USER.fullmatch(user):
        raise SigningError(f"{source}: user name {user!r} must match {_USER.pattern}")
    return user


@dataclass(frozen=True)
class UserPublicKey:
    user: str
    raw: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def dumps(self) -> str:
        return f"{PUB_MAGIC} {self.user} {self.raw.hex()}\n"

    @classmethod
    def loads(cls, text: str, *, source: str = "public key") -> UserPublicKey:
        parts = text.split()
        if len(parts) != 3 or parts[0] != PUB_MAGIC:
            raise SigningError(f"{source}: expected '{PUB_MAGIC} <user> <64 hex digits>'")
        return cls(_check_user(parts[1], source), _hex_bytes(parts[2], 32, source))


@dataclass(frozen=True)
class UserKey:
    user: str
    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls, user: str) -> UserKey:
        return cls(_check_user(user, "user key"), os.urandom(32))

    @property
    def public(self) -> UserPublicKey:
        return UserPublicKey(self.user, curves.ed25519_public(self.seed))

    def dumps(self) -> str:
        return f"{KEY_MAGIC} {self.user} {self.seed.hex()}\n"

    @classmethod
    def loads(cls, text: str, *, source: str = "user key") -> UserKey:
        parts = text.split()
        if len(parts) != 3 or parts[0] != KEY_MAGIC:
            raise SigningError(f"{source}: not a bjgrid user key ('{KEY_MAGIC} <user> <hex>')")
        return cls(_check_user(parts[1], source), _hex_bytes(parts[2], 32, source))

    def sign(self, message: bytes) -> bytes:
        return curves.ed25519_sign(self.seed, message)


def _hex_bytes(text: str, size: int, source: str) -> bytes:
    if len(text) != 2 * size or not _HEX.fullmatch(text.lower()):
        raise SigningError(f"{source}: expected {2 * size} hex digits")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class AppSignature:
    user: str
    fingerprint: str
    public_key: bytes
    signature: bytes
    app: str = ""
    """The app id the signature is bound to."""
    ce_key: bytes = b""
    """The raw public CE key (app/ce_key.py) allowed to coordinate the app."""

    def encode(self) -> str:
        """One compact JSON string (for a control message or the journal)."""
        return json.dumps(
            {
                "v": SIGNATURE_VERSION,
                "user": self.user,
                "fingerprint": self.fingerprint,
                "public_key": self.public_key.hex(),
                "app": self.app,
                "ce_key": self.ce_key.hex(),
                "signature": base64.b64encode(self.signature).decode(),
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, text: str) -> AppSignature:
        """Parse ``encode()`` output; SigningError if it is not one (``OLD_SIGNATURE`` for a
        version 1 signature)."""
        try:
            d = json.loads(text)
            if isinstance(d, dict) and d.get("v") == 1:
                raise SigningError(OLD_SIGNATURE)
            if not isinstance(d, dict) or d.get("v") != SIGNATURE_VERSION:
                raise ValueError(f"not a version {SIGNATURE_VERSION} signature")
            sig = base64.b64decode(d["signature"], validate=True)
            pub = _hex_bytes(str(d["public_key"]), 32, "signature")
            ce = _hex_bytes(str(d["ce_key"]), 32, "signature's CE key")
            user, fp, app = str(d["user"]), str(d["fingerprint"]), str(d["app"])
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise SigningError(f"malformed app signature: {e}") from None
        if len(sig) != 64:
            raise SigningError("malformed app signature: signature is not 64 bytes")
        return cls(user, fp, pub, sig, app, ce)


def signature_problem(text: str) -> str | None:
    """Why an encoded signature (from a journal or a message) cannot be used ("" is an
    unsigned app: None); e.g. ``OLD_SIGNATURE``."""
    if not text:
        return None
    try:
        AppSignature.decode(text)
    except SigningError as e:
        return str(e)
    return None


def signed_payload(
    app: str,
    bundle_sha256: str,
    spec: AppSpec | Mapping[str, Any],
    user: str,
    ce_key: bytes,
) -> bytes:
    """The exact bytes a user signs for an app (see the module docstring)."""
    spec_json = spec if isinstance(spec, Mapping) else spec.to_json()
    body = {
        "app": app,
        "bundle_sha256": bundle_sha256.lower(),
        "ce_key": ce_key.hex(),
        "spec": spec_json,
        "user": user,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _DOMAIN + text.encode("ascii")


def sign_app(
    key: UserKey,
    app: str,
    bundle_sha256: str,
    spec: AppSpec | Mapping[str, Any],
    ce_key: bytes,
) -> AppSignature:
    """Sign app ``app``: its bundle's sha256, its spec and the CE public key ``ce_key`` that
    may coordinate it, under the key's user name."""
    pub = key.public
    sig = key.sign(signed_payload(app, bundle_sha256, spec, key.user, ce_key))
    return AppSignature(key.user, pub.fingerprint, pub.raw, sig, app, ce_key)


@dataclass(frozen=True)
class TrustedUser:
    fingerprint: str
    user: str | None = None
    """The name given with the key in the trust list, when it was a public-key line."""


@dataclass(frozen=True)
class TrustList:
    """The users a volunteer accepts apps from (``trusted_users`` in its config)."""

    users: tuple[TrustedUser, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustList:
        """Entries: public-key lines, bare public keys (64 hex) or fingerprints (32 hex)."""
        users: list[TrustedUser] = []
        for n, entry in enumerate(entries, 1):
            text = entry.strip()
            source = f"trusted_users entry {n}"
            if text.startswith(PUB_MAGIC):
                pub = UserPublicKey.loads(text, source=source)
                users.append(TrustedUser(pub.fingerprint, pub.user))
            elif len(text) == 64:
                users.append(TrustedUser(fingerprint(_hex_bytes(text, 32, source))))
            elif len(text) == _FINGERPRINT_HEX and _HEX.fullmatch(text.lower()):
                users.append(TrustedUser(text.lower()))
            else:
                raise SigningError(
                    f"{source}: expected a '{PUB_MAGIC} ...' line, a public key (64 hex "
                    f"digits) or a fingerprint ({_FINGERPRINT_HEX} hex digits)"
                )
        return cls(tuple(users))

    def find(self, fp: str) -> TrustedUser | None:
        return next((u for u in self.users if u.fingerprint == fp), None)


def verify_app(
    signature: AppSignature | None,
    app: str,
    bundle_sha256: str,
    spec: AppSpec | Mapping[str, Any],
    trusted: TrustList | None,
) -> TrustedUser | None:
    """Accept or refuse app ``app``. Returns who signed it (None for an unsigned app accepted
    by a volunteer with no trust list); raises SignatureRefused with the reason otherwise. The
    CE key the app may be coordinated with is ``signature.ce_key`` once this returned."""
    if signature is None:
        if trusted is None:
            return None
        raise SignatureRefused("app is not signed and this volunteer accepts only trusted users")
    if signature.app != app:
        raise SignatureRefused(
            f"the signature is for app {signature.app!r}, not {app!r} (a replayed signature)"
        )
    fp = fingerprint(signature.public_key)
    if fp != signature.fingerprint:
        raise SignatureRefused(f"signature fingerprint {signature.fingerprint} != its key's {fp}")
    if not curves.ed25519_valid(
        signature.public_key,
        signature.signature,
        signed_payload(app, bundle_sha256, spec, signature.user, signature.ce_key),
    ):
        raise SignatureRefused(
            f"bad signature by {signature.user!r} (key {fp}): the files or task list were "
            "changed after signing, or it names another coordinating key"
        ) from None
    if trusted is None:
        return TrustedUser(fp, signature.user)
    who = trusted.find(fp)
    if who is None:
        raise SignatureRefused(f"user {signature.user!r} (key {fp}) is not in trusted_users")
    if who.user is not None and who.user != signature.user:
        raise SignatureRefused(
            f"key {fp} belongs to {who.user!r} in trusted_users but signed as {signature.user!r}"
        )
    return who


def user_key_path(config_dir: Path) -> Path:
    """Where a user's signing key lives by default (its public line beside it, ``.pub``)."""
    return config_dir / USER_KEY_FILE


def write_user_key(key: UserKey, path: Path, *, overwrite: bool = False) -> Path:
    """Write the key to ``path`` (mode 0600) and its public line beside it (``.pub``, 0644);
    returns the public file's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SigningError(f"{path} exists already (use --force to replace it)") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.dumps())
    os.chmod(path, 0o600)
    pub = path.with_suffix(".pub")
    pub.write_text(key.public.dumps())
    pub.chmod(0o644)
    return pub


def load_user_key(path: Path) -> UserKey:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SigningError(f"no user signing key at {path}: run 'bjgrid keygen --user'") from None
    except OSError as e:
        raise SigningError(f"cannot read user key {path}: {e.strerror}") from None
    return UserKey.loads(text, source=str(path))
