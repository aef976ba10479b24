"""Identifier rules for everything that crosses a machine boundary. Pure.

App ids, task ids and node ids are names (``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``, the app.json
rule): safe as one file-name component, a DNS-SD TXT value and a folder name. User names follow
the signing rule (``@`` allowed). Relative paths (declared outputs) are non-empty, relative,
free of ``..`` and NUL, and bounded. Each ``check_*`` returns the value or raises
:class:`IdError` naming what is wrong.
"""

from __future__ import annotations

import math
import posixpath
import re

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""App names, app ids, task ids and node ids."""
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64"
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
RESERVED_IDS = frozenset({"results.json"})
"""Task ids that would collide with files in the output folder."""
MAX_RELPATH = 1024
"""Longest relative path (bytes, UTF-8) a message may carry."""
MAX_COMPONENT = 255
MAX_HOST = 255
MAX_ENV_NAME = 256


class IdError(ValueError):
    """An identifier, name or path is not valid; the message says which and why."""


def check_name(value: object, what: str = "name") -> str:
    """An app id, node id or app name; IdError otherwise."""
    if type(value) is not str or not NAME_RE.match(value):
        raise IdError(f"{value!r} is not a valid {what} ({NAME_RULE} characters)")
    return value


def check_app_id(value: object) -> str:
    return check_name(value, "app id")


def check_node_id(value: object) -> str:
    return check_name(value, "node id")


def check_task_id(value: object) -> str:
    check_name(value, "task id")
    if value in RESERVED_IDS:
        raise IdError(f"{value!r} is reserved (it names the results file)")
    assert isinstance(value, str)
    return value


def check_user(value: object, *, empty_ok: bool = False) -> str:
    """A user name as in a signature ("" allowed with ``empty_ok``: an unsigned app)."""
    if empty_ok and value == "":
        return ""
    if type(value) is not str or not USER_RE.match(value):
        raise IdError(f"{value!r} is not a valid user name (must match {USER_RE.pattern})")
    return value


def relpath_problem(rel: str) -> str | None:
    """Why ``rel`` is not a safe relative path (None if it is)."""
    if not rel or rel.strip() == "":
        return "empty path"
    if "\x00" in rel:
        return "path contains a NUL character"
    if rel.startswith("/"):
        return "absolute path"
    parts = rel.split("/")
    if ".." in parts:
        return "path contains '..'"
    if posixpath.normpath(rel) == ".":
        return "path names the folder itself"
    if len(rel.encode("utf-8", "surrogatepass")) > MAX_RELPATH:
        return f"path longer than {MAX_RELPATH} bytes"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_COMPONENT for p in parts):
        return f"a path component is longer than {MAX_COMPONENT} bytes"
    return None


def check_relpath(value: object, what: str = "path") -> str:
    if type(value) is not str:
        raise IdError(f"{what} {value!r} is not a string")
    why = relpath_problem(value)
    if why is not None:
        raise IdError(f"{what} {value!r}: {why}")
    return value


def check_host(value: object, *, empty_ok: bool = True) -> str:
    """A host name or address as reported by a peer: bounded, no '/', NUL or control
    characters. Never used as a path."""
    if type(value) is not str:
        raise IdError(f"host {value!r} is not a string")
    if not value and empty_ok:
        return value
    if not value or len(value) > MAX_HOST or any(c == "/" or ord(c) < 32 for c in value):
        raise IdError(f"{value!r} is not a valid host name")
    return value


def check_env_name(value: object) -> str:
    if (
        type(value) is not str
        or not value
        or "=" in value
        or "\x00" in value
        or len(value) > MAX_ENV_NAME
    ):
        raise IdError(f"{value!r} is not a valid environment variable name")
    return value


def check_count(value: int, what: str) -> int:
    """A term, attempt, sequence number or slot count: an int >= 0."""
    if value < 0:
        raise IdError(f"{what} {value} is negative")
    return value


def check_duration(value: float | None, what: str, *, none_ok: bool = False) -> float | None:
    """A lease or timeout: finite and >= 0 (None allowed with ``none_ok``)."""
    if value is None and none_ok:
        return None
    if value is None or not math.isfinite(value) or value < 0:
        raise IdError(f"{what} {value!r} must be a finite number >= 0")
    return value
