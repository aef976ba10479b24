"""A CE's own IDTOKENS signing key, and the tokens minted with it.

The key is fresh random bytes made for one CE (never derived from the grid key: a grid member
must not be able to compute it) and stays on the coordinator, mode 0600. Tokens are minted by
HTCondor's own ``condor_token_create`` with that key, so their format is exactly what the
daemons verify: an HS256 JWT whose ``kid`` names the key, ``iss`` is the CE's trust domain and
``sub`` the identity (see ``config.CeNames``). A worker receives its token over the grid's
authenticated channel and stores it in its token directory.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bonjourgrid.ce_backends.condor.config import DOMAIN, KEY_NAME
from bonjourgrid.ce_backends.condor.installation import Installation

KEY_BYTES = 32
# Long enough for any app; the CE's key dies with the CE anyway.
TOKEN_LIFETIME_S = 7 * 24 * 3600


@contextlib.contextmanager
def _scratch(inst: Installation, near: Path) -> Iterator[Path]:
    """A private directory for one tool run (bound into the rootfs only for that run: the
    key directory itself may be bound by a running head, see Installation.forget_binds)."""
    tmp = Path(tempfile.mkdtemp(prefix=".bjg-", dir=near))
    # Without a config of their own the tools read Debian's and resolve the host name first,
    # which hangs on a LAN with no DNS (a virtual-LAN host, a link-local lab).
    (tmp / "condor_config").write_text(f"NO_DNS = True\nDEFAULT_DOMAIN_NAME = {DOMAIN}\n")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        inst.forget_binds([tmp])


def make_signing_key(inst: Installation, key_dir: Path) -> Path:
    """Create ``key_dir/POOL`` holding a fresh random key in HTCondor's key-file format."""
    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    key_file = key_dir / KEY_NAME
    if key_file.exists():
        raise FileExistsError(f"{key_file} already exists: one key per CE")
    secret = base64.b64encode(secrets.token_bytes(KEY_BYTES))
    with _scratch(inst, key_dir) as tmp:
        inst.run(
            ["condor_store_cred", "add", "-c", "-f", str(tmp / KEY_NAME), "-i", "-"],
            env={"CONDOR_CONFIG": str(tmp / "condor_config")},
            binds=[tmp],
            input=secret,
        )
        if not (tmp / KEY_NAME).is_file():
            raise RuntimeError(f"condor_store_cred wrote no key in {tmp}")
        os.chmod(tmp / KEY_NAME, 0o600)
        os.replace(tmp / KEY_NAME, key_file)
    return key_file


def mint_token(
    inst: Installation,
    key_file: Path,
    *,
    trust_domain: str,
    identity: str,
    lifetime_s: int = TOKEN_LIFETIME_S,
) -> str:
    """A token for ``identity`` signed with ``key_file``, issued by ``trust_domain``."""
    with _scratch(inst, key_file.parent) as tmp:
        shutil.copy2(key_file, tmp / KEY_NAME)
        out = tmp / "token"
        inst.run(
            [
                "condor_token_create",
                "-identity",
                identity,
                "-key",
                KEY_NAME,
                "-lifetime",
                str(lifetime_s),
                "-file",
                str(out),
            ],
            env={
                "CONDOR_CONFIG": str(tmp / "condor_config"),
                "_CONDOR_SEC_TOKEN_POOL_SIGNING_KEY_FILE": str(tmp / KEY_NAME),
                "_CONDOR_SEC_PASSWORD_DIRECTORY": str(tmp),
                "_CONDOR_TRUST_DOMAIN": trust_domain,
            },
            binds=[tmp],
        )
        token = out.read_text().strip() if out.is_file() else ""
    if token.count(".") != 2:
        raise RuntimeError(f"condor_token_create gave no token for {identity}")
    return token


def install_token(token_dir: Path, name: str, token: str) -> Path:
    """Store ``token`` as ``token_dir/name`` (0600; the directory 0700), where daemons look."""
    token_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(token_dir, 0o700)
    path = token_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path
