"""Where the ``boinc`` client program is: the one fact about BOINC an idle daemon needs
(which backends it advertises), kept apart so that asking loads nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path


def boinc_executable() -> str | None:
    """Path of the ``boinc`` client program, or None when boinc-client is not installed."""
    return shutil.which("boinc") or ("/usr/bin/boinc" if Path("/usr/bin/boinc").exists() else None)
