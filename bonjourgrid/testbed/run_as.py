"""Run a testbed command as an ordinary (non-root) user, as on a real desktop.

The README's volunteer is ``bjgrid join`` as the desktop's own user, so the tests run it that
way too: inside a namespace host (entered as root), ``setpriv`` drops to the user before
Python starts. That user may not be able to run this interpreter (a venv whose base lives
under ``/root``): then the system's ``python3`` of the same version runs it, with this
interpreter's site-packages added (pure Python and ABI-compatible wheels of one CPython) and
without its own (``-S``: Debian's dist-packages would shadow the venv's newer packages).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_BOOT = (
    "import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); "
    "runpy.run_module('bonjourgrid.cli', run_name='__main__', alter_sys=True)"
)


def _others_can_run(path: str) -> bool:
    real = Path(os.path.realpath(path))
    for d in real.parents:
        if not os.stat(d).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(real).st_mode & stat.S_IXOTH)


def python_for_others() -> str:
    """An interpreter any user can run that imports what this one imports."""
    if _others_can_run(sys.executable):
        return sys.executable
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system and _others_can_run(system):
        return system
    raise RuntimeError(f"no Python that other users can run ({sys.executable} is private)")


@dataclass(frozen=True)
class RunAs:
    """A user the testbed runs bjgrid as: uid/gid, its home, and its own environment."""

    uid: int
    gid: int
    home: Path
    name: str = "bjgrid-user"
    env_extra: Mapping[str, str] = field(default_factory=dict)

    def command(self, cli_args: Sequence[str]) -> list[str]:
        """``bjgrid CLI_ARGS`` as this user (no supplementary groups)."""
        site = sysconfig.get_paths()["purelib"]
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--",
            python_for_others(), "-S", "-c", _BOOT, site, *cli_args,
        ]  # fmt: skip

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        env.update(HOME=str(self.home), USER=self.name, LOGNAME=self.name)
        env.update(self.env_extra)
        return env


__all__ = ["RunAs", "python_for_others"]
