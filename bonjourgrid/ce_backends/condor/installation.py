"""Where HTCondor's daemons are on this machine, and how to run one of its programs.

Two kinds of installation: *native* (``condor_master`` on PATH) and a *rootfs* (a Debian tree
built by ``scripts/setup-condor``, run under chroot). A rootfs is found at ``$BJGRID_CONDOR_ROOT``
if set, else at the configured path, else at the default cache path. Programs in a rootfs run
in a private mount namespace (``unshare -m``) that bind-mounts the rootfs onto itself (HTCondor's
starter needs ``/`` to be a mount point), ``/proc``, ``/dev`` and the caller's directories at the
*same* path inside, so paths mean the same thing in and out of the chroot; all those mounts
vanish with the process. Every step of the launch line execs: the pid is the program's, and
the network namespace is the caller's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "BJGRID_CONDOR_ROOT"
CACHE_ENV = "BJGRID_CACHE"
ROOTFS_NAME = "htcondor-rootfs"
# Written by scripts/setup-condor once the rootfs is complete.
STAMP = ".bjgrid-rootfs-complete"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# $1 rootfs, $2 number of directories to bind, then those directories, then the command.
_CHROOT_SCRIPT = """\
r=$1; n=$2; shift 2
mount --bind "$r" "$r"
mount -t proc proc "$r/proc"
mount --bind /dev "$r/dev"
while [ "$n" -gt 0 ]; do mkdir -p "$r$1"; mount --bind "$1" "$r$1"; shift; n=$((n-1)); done
exec "$@"
"""


class CondorUnavailable(RuntimeError):
    """No usable HTCondor installation here."""


def default_rootfs() -> Path:
    """``${BJGRID_CACHE:-~/.cache/bonjourgrid}/htcondor-rootfs`` (where setup-condor builds)."""
    cache = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "bonjourgrid")
    return Path(cache) / ROOTFS_NAME


@dataclass(frozen=True)
class Installation:
    """One HTCondor installation: ``rootfs`` None means native binaries on PATH."""

    rootfs: Path | None = None

    def available(self) -> bool:
        """Whether daemons can run from here (a few stat calls: cheap enough to poll)."""
        if self.rootfs is None:
            return all(shutil.which(p) for p in ("condor_master", "condor_token_create"))
        return (
            os.geteuid() == 0
            and shutil.which("unshare") is not None
            and (self.rootfs / STAMP).is_file()
            and os.access(self.rootfs / "usr/sbin/condor_master", os.X_OK)
        )

    def argv(
        self, argv: Sequence[str], *, env: Mapping[str, str], binds: Sequence[Path] = ()
    ) -> list[str]:
        """The command line that runs ``argv`` with exactly ``env`` (plus PATH).

        ``binds`` are absolute host directories the program must see (at the same path).
        """
        if not argv:
            raise ValueError("empty argv")
        pairs = [f"{k}={v}" for k, v in {"PATH": PATH, **env}.items()]
        if self.rootfs is None:
            return ["env", "-i", *pairs, *argv]
        dirs = [str(Path(b).resolve()) for b in binds]
        return [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-euc", _CHROOT_SCRIPT, "sh", str(self.rootfs), str(len(dirs)), *dirs,
            "env", "-i", *pairs, "chroot", str(self.rootfs), *argv,
        ]  # fmt: skip

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        binds: Sequence[Path] = (),
        timeout: float = 30,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a short HTCondor tool to completion; raise ``CalledProcessError`` on failure."""
        return subprocess.run(
            self.argv(argv, env=env, binds=binds),
            input=input,
            capture_output=True,
            timeout=timeout,
            check=True,
        )

    def forget_binds(self, binds: Sequence[Path]) -> None:
        """Remove the empty mount-point directories ``argv`` made inside the rootfs.

        Only for directories no other running program binds: removing a directory that is a
        mount point in another mount namespace detaches that mount there (Linux >= 3.18).
        Parents are left in place for the same reason.
        """
        if self.rootfs is None:
            return
        for b in binds:
            with contextlib.suppress(OSError):  # not empty, or already gone
                Path(str(self.rootfs) + str(Path(b).resolve())).rmdir()

    def user_id(self, name: str) -> tuple[int, int] | None:
        """(uid, gid) of ``name`` in the installation's passwd file, or None."""
        passwd = (self.rootfs or Path("/")) / "etc/passwd"
        try:
            lines = passwd.read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == name:
                return int(fields[2]), int(fields[3])
        return None


def find(configured: str | Path | None = None) -> Installation | None:
    """A usable installation: ``$BJGRID_CONDOR_ROOT``, else ``configured``, else native, else
    the default rootfs; None when there is none. ``BJGRID_CONDOR_ROOT=/`` means native."""
    explicit = os.environ.get(ROOT_ENV) or (str(configured) if configured else None)
    if explicit:
        inst = Installation(None if Path(explicit) == Path("/") else Path(explicit))
        return inst if inst.available() else None
    for inst in (Installation(None), Installation(default_rootfs())):
        if inst.available():
            return inst
    return None


def require(configured: str | Path | None = None) -> Installation:
    """Like :func:`find` but raise :class:`CondorUnavailable` with the reason."""
    inst = find(configured)
    if inst is None:
        where = os.environ.get(ROOT_ENV) or configured or default_rootfs()
        raise CondorUnavailable(
            f"no usable HTCondor: not on PATH and no complete rootfs at {where} "
            "(build one with scripts/setup-condor; chroot needs root)"
        )
    return inst
