"""Bubblewrap: how a task is confined on a volunteer whose daemon does not run as root.

A desktop's own user (the README's ``bjgrid join`` set-up) cannot make slot accounts, cgroups
or namespaces by itself; bubblewrap (Debian ``bubblewrap``, the sandbox Flatpak is built on)
makes them unprivileged, in a user namespace. Each task runs as::

    bwrap --unshare-all [--share-net] --die-with-parent --new-session
          --ro-bind /usr /usr  --symlink usr/bin /bin ...   (the system's dirs, read-only)
          --ro-bind /etc /etc  --proc /proc  --dev /dev  --tmpfs /tmp  --tmpfs /dev/shm
          --bind <task dir> /tmp/task  --chdir /tmp/task  -- ARGV

so it sees the system's programs and libraries and its own directory, and nothing else: no
home directory, no keys, no other app, no ``/run`` or ``/var``. ``--unshare-all`` gives it a
network namespace with only a loopback (unless the task asks for the network), and a PID
namespace whose init is bwrap's reaper: when the task's first process ends, the init exits
and the kernel kills every process left in the namespace, double-forked ``setsid`` ones
included. ``--die-with-parent`` ends the sandbox when the daemon dies.

The argv builder is pure; ``probe()`` runs bwrap once per program (cached) and says why it
cannot be used here (not installed, or the kernel refuses unprivileged user namespaces);
``decide()`` turns that into the volunteer's isolation mode (``Isolation``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from bonjourgrid.ce_backends.embedded.isolation import TASK_MOUNT

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
"""What a task sees of the machine, read-only (those that exist). Never /home, /root, /run,
/var, /tmp, /mnt, /media, /srv: they hold the owner's and the system's data."""
RESOLVER_DIRS = ("/run/systemd/resolve",)
"""Read-only for a task with the network only: /etc/resolv.conf often links there."""
PROBE_TIMEOUT = 10.0
"""Seconds bwrap may take to run ``true`` in a sandbox (a first run reads its libraries)."""
MAX_REASON = 200
"""Characters of bwrap's complaint kept as the reason it cannot be used."""


@dataclass(frozen=True)
class SystemEntry:
    """One top-level system path: a folder bound read-only, or a link made again inside."""

    path: str
    link: str | None = None
    """The link's target when ``path`` is a symbolic link (``/bin -> usr/bin``)."""


@functools.cache
def system_layout(paths: tuple[str, ...] = SYSTEM_PATHS) -> tuple[SystemEntry, ...]:
    """The entries of ``paths`` that exist here (links as links, folders as folders)."""
    found = []
    for path in paths:
        if os.path.islink(path):
            found.append(SystemEntry(path, os.readlink(path)))
        elif os.path.isdir(path):
            found.append(SystemEntry(path))
    return tuple(found)


def argv(
    program: str,
    *,
    task_dir: str,
    layout: Sequence[SystemEntry],
    network: bool = False,
    tmp_size_mb: int = 256,
    resolver: Sequence[SystemEntry] = (),
) -> list[str]:
    """bwrap's own arguments for a task in ``task_dir`` (the task's argv follows them).

    ``network``: the task asked for it (the host's network is shared, plus ``resolver``).
    """
    args = [program, "--unshare-all"]
    if network:
        args.append("--share-net")
    args += ["--die-with-parent", "--new-session"]
    for entry in (*layout, *(resolver if network else ())):
        if entry.link is not None:
            args += ["--symlink", entry.link, entry.path]
        else:
            args += ["--ro-bind", entry.path, entry.path]
    size = str(max(1, tmp_size_mb) * 1024 * 1024)
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm"]
    args += ["--bind", task_dir, TASK_MOUNT, "--chdir", TASK_MOUNT, "--"]
    return args


# --- can bwrap be used here? ----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    ok: bool
    program: str
    """The bwrap found ("" when none)."""
    reason: str = ""
    """Why it cannot be used (when not ``ok``)."""


def resolve(program: str) -> str | None:
    """The bwrap to run: ``program`` as given when it has a '/', else looked up on PATH."""
    if "/" in program:
        return program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    return shutil.which(program or "bwrap")


@functools.cache
def probe(program: str = "") -> Probe:
    """Whether ``program`` (see ``resolve``) sandboxes a ``true`` the way tasks are run.

    Run once per program and process: the answer does not change while the daemon runs.
    """
    found = resolve(program)
    if found is None:
        where = program if "/" in program else f"{program or 'bwrap'} on PATH"
        return Probe(False, "", f"no bubblewrap ({where} not found; Debian package bubblewrap)")
    with tempfile.TemporaryDirectory(prefix="bjgrid-bwrap-probe-") as d:
        cmd = [*argv(found, task_dir=d, layout=system_layout(), tmp_size_mb=1), "true"]
        try:
            done = subprocess.run(
                cmd,
                cwd=d,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT,
                check=False,
                env={"PATH": "/usr/bin:/bin"},
            )
        except (OSError, subprocess.SubprocessError) as e:
            return Probe(False, found, f"bubblewrap ({found}) does not run: {e}")
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        why = said[-1] if said else f"exit status {done.returncode}"
        return Probe(False, found, f"bubblewrap ({found}) cannot sandbox: {why}"[:MAX_REASON])
    return Probe(True, found)


# --- the volunteer's isolation mode -----------------------------------------------------------

ROOT = "root"
"""Slot accounts, cgroups and namespaces (the daemon runs as root)."""
BWRAP = "bwrap"
"""Each task in a bubblewrap sandbox (a daemon that is not root)."""
UNISOLATED = "unisolated"
"""No isolation, and the owner said so (``join --allow-unisolated``, or ``--local``)."""
NONE = "none"
"""No isolation possible: this volunteer refuses tasks."""


@dataclass(frozen=True)
class Isolation:
    mode: str
    """ROOT, BWRAP, UNISOLATED or NONE."""
    reason: str = ""
    """Why there is no bubblewrap (UNISOLATED, NONE)."""
    program: str = ""
    """The bwrap that runs tasks (BWRAP)."""

    @property
    def refuses(self) -> bool:
        return self.mode == NONE

    def refusal(self) -> str:
        """What a refused coordinator (and ``bjgrid status``) is told."""
        return (
            f"no isolation for tasks here ({self.reason}); "
            "its owner may allow that with join --allow-unisolated"
        )


def decide(*, root: bool, bwrap: Probe | None, allow_unisolated: bool) -> Isolation:
    """The isolation mode from what this daemon is and what the probe found (pure)."""
    if root:
        return Isolation(ROOT)
    if bwrap is not None and bwrap.ok:
        return Isolation(BWRAP, program=bwrap.program)
    reason = bwrap.reason if bwrap is not None else "bubblewrap not probed"
    return Isolation(UNISOLATED if allow_unisolated else NONE, reason)


def isolation_for(bwrap_program: str, allow_unisolated: bool) -> Isolation:
    """This daemon's isolation mode (probes bwrap once when the daemon is not root)."""
    root = os.geteuid() == 0
    return decide(
        root=root,
        bwrap=None if root else probe(bwrap_program),
        allow_unisolated=allow_unisolated,
    )
