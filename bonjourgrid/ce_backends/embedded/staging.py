"""Fill a task's fresh directory and give it to the task's slot account."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path


def populate(taskdir: Path, app_files: Path) -> None:
    """Give the task its own copy of the app's files."""
    if not app_files.is_dir():
        return
    for entry in app_files.iterdir():
        target = taskdir / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_copy)
        else:
            _copy(str(entry), str(target))


def _copy(src: str, dst: str) -> str:
    # Not a hard link: that would let a task modify the staged original for later tasks.
    shutil.copy2(src, dst)
    return dst


def prepare_for(taskdir: Path, uid: int) -> None:
    """Give the slot account its directory (and everything staged in it), mode 0700."""
    for root, dirs, files in os.walk(taskdir):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)
    os.chown(taskdir, uid, uid)
    os.chmod(taskdir, 0o700)


def unreachable_ancestor(path: Path) -> Path | None:
    """The first ancestor another user cannot search (only matters without mount isolation)."""
    for parent in reversed(path.resolve().parents):
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return parent
    return None
