"""What a machine offers the grid: identity and resources, read once at start-up.

Identity is the node key (``control/nodekey.py``): made at first start and kept in the state
dir as ``node.key`` (mode 0600); the node id is its fingerprint, proven in every control
handshake. ``node-id`` beside it only mirrors the id for people; a ``node-id`` left by
version 1 (a random id, not a fingerprint) is replaced, with a log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bonjourgrid.ce_backends.registry import available_backends
from bonjourgrid.control.nodekey import NodeKey, NodeKeyError

log = logging.getLogger(__name__)

NODE_KEY_FILE = "node.key"
NODE_ID_FILE = "node-id"


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
    node_key: NodeKey | None = None
    """The key ``node_id`` is the fingerprint of (``detect`` sets it). None only for a host
    described by hand, as tests do; a daemon given one makes itself a throwaway key."""


def _read_key(path: Path) -> NodeKey | None:
    """The key in ``path``; None if there is none. A file others may read is made private;
    an unreadable or malformed one is moved aside (a new identity beats no daemon)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:  # a link, or unreadable
        aside = path.with_name(f"{path.name}.unusable-{int(time.time())}")
        log.warning("node key %s unusable (%s): moved to %s, making a new one", path, e, aside)
        os.replace(path, aside)
        return None
    with os.fdopen(fd, "r") as f:
        st = os.fstat(f.fileno())
        if stat.S_IMODE(st.st_mode) & 0o077:
            log.warning("node key %s was readable by others: made private (0600)", path)
            os.fchmod(f.fileno(), 0o600)
        text = f.read(4096)
    try:
        key = NodeKey.loads(text, source=str(path))
    except NodeKeyError as e:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.warning("%s: moved to %s, making a new node key (a new node id)", e, aside)
        os.replace(path, aside)
        return None
    if key.dumps() != text:  # an earlier version's file: store the public key beside the seed
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _write_private(tmp, key)
            os.replace(tmp, path)
        except OSError as e:  # the key is still good: only the next start is slower
            log.warning("could not rewrite node key %s with its public key: %s", path, e)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return key


def _write_private(path: Path, key: NodeKey) -> None:
    """``key`` into a new file ``path`` (mode 0600), synced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.dumps())
        f.flush()
        os.fsync(f.fileno())


_GENERATE = "from bonjourgrid.control.nodekey import NodeKey; print(NodeKey.generate().dumps())"


def _generate_elsewhere() -> NodeKey:
    """A fresh key, made in a short-lived child: deriving the public key loads the curve code
    (``bonjourgrid.curves``: libsodium, 1.3 MB of private memory), which this long-lived
    daemon then does not load until its first handshake (issue 15). Made here if the child
    fails."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _GENERATE], capture_output=True, text=True, timeout=60
        )
        if done.returncode == 0:
            return NodeKey.loads(done.stdout, source="a new node key")
        log.debug("node key child failed (%s): making it here", done.stderr.strip()[-200:])
    except (OSError, subprocess.SubprocessError, NodeKeyError) as e:
        log.debug("node key child failed (%s): making it here", e)
    return NodeKey.generate()


def _create_key(path: Path) -> NodeKey:
    """Make a key and publish it atomically (written aside, then hard-linked in place): two
    commands starting at once end up with the same key, never half a file."""
    key = _generate_elsewhere()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_private(tmp, key)
        try:
            os.link(tmp, path)
        except FileExistsError:
            other = _read_key(path)
            if other is not None:
                return other
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return key


def load_node_key(state_dir: Path) -> NodeKey:
    """This machine's node key (``state_dir/node.key``), made at first start. Stable across
    restarts; its fingerprint is the node id."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / NODE_KEY_FILE
    key = _read_key(path) or _create_key(path)
    id_file = state_dir / NODE_ID_FILE
    try:
        old = id_file.read_text(errors="replace").strip()
    except FileNotFoundError:
        old = ""
    if old != key.node_id:
        if old:
            log.warning(
                "node id %s of an earlier bjgrid replaced by %s, the fingerprint of %s "
                "(node ids are proven by the node key since control protocol 2)",
                old[:64],
                key.node_id,
                path,
            )
        tmp = id_file.with_name(f".{NODE_ID_FILE}.{os.getpid()}.tmp")
        tmp.write_text(key.node_id + "\n")
        os.replace(tmp, id_file)
    return key


def detect(node_key: NodeKey, *, slots: int | None = None) -> HostInfo:
    cpus = os.cpu_count() or 1
    return HostInfo(
        node_id=node_key.node_id,
        hostname=socket.gethostname().split(".")[0] or "host",
        cpus=cpus,
        slots=slots if slots is not None else cpus,
        mem_mb=psutil.virtual_memory().total // (1024 * 1024),
        os=platform.system().lower(),
        arch=platform.machine(),
        backends=available_backends(),
        node_key=node_key,
    )
