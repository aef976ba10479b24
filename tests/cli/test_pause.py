"""`bjgrid pause` / `bjgrid resume` (issue 14, item 8): CliRunner without a daemon, and a
real `bjgrid join` process that is paused, restarted (the pause holds) and resumed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bonjourgrid.cli.main import cli
from bonjourgrid.cli.pause import message
from bonjourgrid.daemon.local_messages import PauseReply
from bonjourgrid.policy import pause as pause_state

BJGRID = [sys.executable, "-m", "bonjourgrid.cli"]


@pytest.fixture
def home() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="bjg-pause-", dir="/var/tmp"))
    d.chmod(0o711)  # the hostile test's other user may walk to the socket, not read
    yield d
    shutil.rmtree(d, ignore_errors=True)


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "BJGRID_HOME": str(home), "BJGRID_PROFILE": "fast"}


def test_without_a_daemon_the_pause_is_recorded_for_the_next_join(home: Path) -> None:
    e = {"BJGRID_HOME": str(home)}
    r = CliRunner().invoke(cli, ["pause"], env=e)
    assert r.exit_code == 0, r.output
    assert "bjgrid join will start paused" in r.output
    state = Path(json.loads(CliRunner().invoke(cli, ["paths", "--json"], env=e).output)["state"])
    assert pause_state.is_paused(state)
    r = CliRunner().invoke(cli, ["resume", "--json"], env=e)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"paused": False, "daemon": False, "policy": "ok", "tasks": 0}
    assert not pause_state.is_paused(state)


def test_messages_say_what_is_true() -> None:
    assert "2 task(s) stopped" in message(PauseReply(True, "paused", 2, 300.0), True)
    assert "offered to the grid again" in message(PauseReply(False, "ok", 0, 300.0), False)
    busy = message(PauseReply(False, "busy", 1, 300.0), False)
    assert "sees you at the machine" in busy and "300 s" in busy
    for text in (message(PauseReply(True, "paused", 0, 1.0), True), busy):
        assert len(text) <= 100 and "\n" not in text


def start_join(home: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*BJGRID, "-v", "join", "--no-mdns", "--listen", "127.0.0.1", "--allow-unisolated"],
        env=env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sock = home / "state" / "daemon.sock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = subprocess.run([*BJGRID, "paths"], env=env(home), capture_output=True)
        if sock.exists():
            return proc
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"no daemon socket at {sock}: {r.stdout!r}")


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    return err.decode()


def ask(home: Path, *args: str) -> dict[str, object]:
    r = subprocess.run([*BJGRID, *args, "--json"], env=env(home), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    return doc


def test_a_real_daemon_is_paused_holds_it_across_a_restart_and_resumes(home: Path) -> None:
    subprocess.run([*BJGRID, "keygen"], env=env(home), check=True, capture_output=True)
    proc = start_join(home)
    try:
        assert ask(home, "pause") == {"paused": True, "daemon": True, "policy": "paused",
                                      "tasks": 0}  # fmt: skip
    finally:
        log = stop(proc)
    assert "suspend" in log and "paused" in log
    assert pause_state.is_paused(home / "state")
    proc = start_join(home)  # a restart: still paused until resume
    try:
        time.sleep(1.0)
        got = ask(home, "resume")
        assert got["policy"] == "ok" and got["daemon"] is True
        assert not pause_state.is_paused(home / "state")
    finally:
        log = stop(proc)
    assert "paused by its owner (bjgrid resume lifts it)" in log
    assert "owner policy: resume" in log
