"""What a machine offers the grid: identity and resources, read once at start-up."""

from __future__ import annotations

import os
import platform
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from bonjourgrid.ce_backends.registry import available_backends


@dataclass(frozen=True)
class HostInfo:
    node_id: str
    hostname: str
    cpus: int
    slots: int
    mem_mb: int
    os: str
    arch: str
    backends: tuple[str, ...]


def load_node_id(path: Path) -> str:
    """A short random id kept in the state dir: stable across restarts, unique per machine."""
    try:
        node_id = path.read_text().strip()
        if node_id:
            return node_id
    except FileNotFoundError:
        pass
    node_id = secrets.token_hex(4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(node_id + "\n")
    return node_id


def detect(node_id: str, *, slots: int | None = None) -> HostInfo:
    cpus = os.cpu_count() or 1
    return HostInfo(
        node_id=node_id,
        hostname=socket.gethostname().split(".")[0] or "host",
        cpus=cpus,
        slots=slots if slots is not None else cpus,
        mem_mb=psutil.virtual_memory().total // (1024 * 1024),
        os=platform.system().lower(),
        arch=platform.machine(),
        backends=available_backends(),
    )
