"""One way to build a filesystem path from received data: ``under(root, *parts)``.

Each part must be one safe file-name component (non-empty, no '/', no NUL, not '.' or '..',
at most 255 bytes; ids that passed bonjourgrid/ids.py always are), and the joined path,
resolved, must stay under ``root`` resolved (so a symbolic link planted on the way cannot lead
out either). Anything else raises :class:`UnsafePath`.
"""

from __future__ import annotations

import os
from pathlib import Path

from bonjourgrid.ids import MAX_COMPONENT


class UnsafePath(ValueError):
    """A path built from received data would not stay under its root."""


def under(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root / parts[0] / ...``, proven to stay under ``root``; UnsafePath otherwise."""
    base = Path(root)
    if not parts:
        raise UnsafePath("no path component given")
    for part in parts:
        why = component_problem(part)
        if why is not None:
            raise UnsafePath(f"{part!r} is not a safe path component: {why}")
    path = base.joinpath(*parts)
    real_root = os.path.realpath(base)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise UnsafePath(f"{path} resolves to {real}, outside {real_root}")
    return path


def component_problem(part: object) -> str | None:
    """Why ``part`` is not one safe file-name component (None if it is)."""
    if type(part) is not str or not part:
        return "empty or not a string"
    if "/" in part or "\x00" in part:
        return "contains '/' or NUL"
    if part in (".", ".."):
        return "names a folder itself or its parent"
    if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT:
        return f"longer than {MAX_COMPONENT} bytes"
    return None
