"""The grid key: a secret shared by one lab's machines. Its fingerprint is the grid id.

File format: one line ``bjgrid-key-v1 <64 hex digits>``, mode 0600. The grid id is public
(it goes in every TXT record, so two labs on one segment never mix); the key never leaves
the machine: the control channel proves knowledge of it by HMAC.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

KEY_ENV = "BJGRID_KEY_FILE"
_MAGIC = "bjgrid-key-v1"
_KEY_BYTES = 32


class KeyError_(Exception):
    """The grid key is missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class GridKey:
    secret: bytes = field(repr=False)

    @property
    def grid_id(self) -> str:
        """Short public fingerprint: 8 hex digits of a domain-separated hash."""
        return hashlib.sha256(b"bjgrid grid id\0" + self.secret).hexdigest()[:8]

    @classmethod
    def generate(cls) -> GridKey:
        return cls(secrets.token_bytes(_KEY_BYTES))

    def dumps(self) -> str:
        return f"{_MAGIC} {self.secret.hex()}\n"

    @classmethod
    def loads(cls, text: str, *, source: str = "key") -> GridKey:
        parts = text.split()
        if len(parts) != 2 or parts[0] != _MAGIC:
            raise KeyError_(f"{source}: not a bjgrid key file (expected '{_MAGIC} <hex>')")
        try:
            secret = bytes.fromhex(parts[1])
        except ValueError:
            raise KeyError_(f"{source}: the key is not valid hex") from None
        if len(secret) != _KEY_BYTES:
            raise KeyError_(f"{source}: the key must be {_KEY_BYTES} bytes")
        return cls(secret)


def write_key(key: GridKey, path: Path, *, overwrite: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeyError_(f"{path} exists already (use --force to replace it)") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.dumps())
    os.chmod(path, 0o600)


def find_key_file(explicit: str | os.PathLike[str] | None, default: Path) -> Path:
    """``--key-file``, then ``BJGRID_KEY_FILE``, then the default path."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env)
    return default


def load_key(path: Path) -> GridKey:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KeyError_(
            f"no grid key at {path}: run 'bjgrid keygen' once, then copy the key to every "
            f"machine of the lab (or point --key-file / {KEY_ENV} at it)"
        ) from None
    except OSError as e:
        raise KeyError_(f"cannot read grid key {path}: {e.strerror}") from None
    return GridKey.loads(text, source=str(path))
