"""DNS-SD names of the grid: service types, instance labels, our own server (host) name.

Pure: no I/O. Instance labels are dot-free (python-zeroconf does not escape dots, and avahi then
drops the service: DESIGN.md "mDNS facts") and unique, because they carry the node id; that
uniqueness is what lets us register with ``cooperating_responders=True`` and skip probing.
"""

from __future__ import annotations

import hashlib
import re

IDLE_TYPE = "_bjg-idle._tcp.local."
WORKER_TYPE = "_bjg-worker._tcp.local."
COORD_TYPE = "_bjg-coord._tcp.local."
VOLUNTEER_TYPES = (IDLE_TYPE, WORKER_TYPE)
ALL_TYPES = (IDLE_TYPE, WORKER_TYPE, COORD_TYPE)

MAX_LABEL_BYTES = 63
"""A DNS label holds at most 63 bytes (RFC 1035 2.3.4; RFC 6763 4.1.1 for instance names)."""

_APP_HASH_CHARS = 6
"""Hex digits of the app id's hash kept when the app id had to be altered to fit a label."""

# Characters that must not appear in an instance label: the dot (label separator, unescaped by
# python-zeroconf), the backslash (DNS-SD escape character) and control characters.
_LABEL_UNSAFE = re.compile(r"[.\\\x00-\x1f\x7f\s]+")
# A host name label (our SRV target) keeps to letters, digits and hyphens (RFC 952/1123).
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def _clean(text: str, unsafe: re.Pattern[str], fallback: str) -> str:
    cleaned = unsafe.sub("-", text).strip("-")
    return cleaned or fallback


def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_bytes`` bytes in UTF-8."""
    if max_bytes <= 0:
        return ""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _fit(parts_before: list[str], host: str, node: str) -> str:
    """Join ``parts_before + [host, node]`` with '-', shortening only the host part."""
    fixed = "-".join([*parts_before, node])
    room = MAX_LABEL_BYTES - _nbytes(fixed) - 1  # 1: the '-' before the host part
    host_part = _truncate_utf8(host, room).rstrip("-")
    return "-".join([*parts_before, host_part, node]) if host_part else fixed


def _app_part(app: str, node: str) -> str:
    """The app id as a label fragment; altered ids get a hash suffix so they stay unique."""
    cleaned = _clean(app, _LABEL_UNSAFE, "app")
    # Leave room for the node id, two '-' separators and at least one byte of host name.
    room = MAX_LABEL_BYTES - _nbytes(node) - 3
    if cleaned == app and _nbytes(cleaned) <= room:
        return cleaned
    digest = hashlib.sha256(app.encode("utf-8")).hexdigest()[:_APP_HASH_CHARS]
    prefix = _truncate_utf8(cleaned, room - _APP_HASH_CHARS - 1).rstrip("-")
    return f"{prefix}-{digest}" if prefix else digest


def instance_label(hostname: str, node_id: str, app: str | None = None) -> str:
    """``<host>-<node>`` (coordinator records: ``<app>-<host>-<node>``), dot-free, <= 63 bytes.

    The node id is always kept whole; the host part is sanitised (dots and other unsafe
    characters become '-') and shortened to fit. Raises ValueError if the node id alone cannot
    fit or contains unsafe characters.
    """
    if not node_id or _LABEL_UNSAFE.search(node_id) or _nbytes(node_id) > MAX_LABEL_BYTES // 2:
        raise ValueError(f"unusable node id {node_id!r}")
    host = _clean(hostname, _LABEL_UNSAFE, "host")
    before = [] if app is None else [_app_part(app, node_id)]
    return _fit(before, host, node_id)


def server_name(hostname: str, node_id: str) -> str:
    """Our own SRV target, ``bjg-<host>-<node>.local.``: never the OS host name, so avahi keeps
    its own name (DESIGN.md "mDNS facts"). The label keeps to letters, digits and hyphens."""
    if not node_id or _HOST_UNSAFE.search(node_id) or len(node_id) > MAX_LABEL_BYTES // 2:
        raise ValueError(f"unusable node id {node_id!r}")
    host = _clean(hostname, _HOST_UNSAFE, "host").lower()
    return _fit(["bjg"], host, node_id.lower()) + ".local."


def instance_of(name: str, type_: str) -> str:
    """The instance label of a full service name ``<label>.<type_>``."""
    suffix = "." + type_
    return name[: -len(suffix)] if name.endswith(suffix) else name
