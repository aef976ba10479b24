"""Only the machine's own user may pause it (bjgrid pause): another local account cannot
reach the daemon's socket (mode 0600), and one that gets a descriptor anyway (the socket
made world-writable by mistake) is refused by the daemon's peer-uid check. No control
message of the network pauses a machine: the Pause kind exists only in the local registry."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.control.frame_channel import ChannelClosed
from bonjourgrid.control.local_channel import open_local
from bonjourgrid.control.messages import CONTROL
from bonjourgrid.daemon.local_messages import LOCAL, Pause, PauseReply
from bonjourgrid.policy import pause as pause_state

BJGRID = [sys.executable, "-m", "bonjourgrid.cli"]


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bjg-pause-", dir="/var/tmp"))
    d.chmod(0o711)  # the other user may walk to the socket, nothing more
    yield d
    shutil.rmtree(d, ignore_errors=True)


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "BJGRID_HOME": str(home), "BJGRID_PROFILE": "fast"}


def start_join(home: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*BJGRID, "-v", "join", "--no-mdns", "--listen", "127.0.0.1", "--allow-unisolated"],
        env=env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    sock = home / "state" / "daemon.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no daemon socket"
        time.sleep(0.2)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    return proc.communicate(timeout=30)[1].decode()


NOBODY = 65534


def as_nobody(sock: Path) -> str:
    """Ask the daemon to pause from a forked child running as uid nobody (modules are
    loaded already: nobody need not read this venv); what it got, as one word."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        word = "error"
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)

            async def go() -> str:
                try:
                    ch = await open_local(str(sock), registry=LOCAL, timeout=5)
                except PermissionError:
                    return "denied"
                try:
                    return type(await ch.request(Pause(True), timeout=10)).__name__
                except ChannelClosed:  # the daemon said no and hung up before reading
                    return "closed"

            word = asyncio.run(go())
        except BaseException as e:  # said, not raised: the child must not run pytest on
            word = f"error {type(e).__name__}: {e}"
        finally:
            os.write(write, word.encode())
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        return f.read()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another uid")
def test_another_local_user_cannot_pause(home: Path) -> None:
    subprocess.run([*BJGRID, "keygen"], env=env(home), check=True, capture_output=True)
    proc = start_join(home)
    (home / "state").chmod(0o711)  # walkable by others: only the socket's own mode stops them
    sock = home / "state" / "daemon.sock"
    try:
        assert as_nobody(sock) == "denied"
        sock.chmod(0o666)  # a mistake of the machine's admin: the daemon still refuses
        assert as_nobody(sock) in ("Failure", "closed")
        assert not pause_state.is_paused(home / "state")
    finally:
        log = stop(proc)
    assert f"refused local client uid {NOBODY}" in log
    assert "owner policy: suspend" not in log


def test_no_control_message_is_a_pause() -> None:
    names = {cls.__name__ for cls in CONTROL.types().values()}
    assert Pause not in CONTROL and PauseReply not in CONTROL
    assert not any("pause" in n.lower() for n in names)
