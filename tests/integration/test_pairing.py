"""Issue 17's pairing "done when", with real `bjgrid` processes and real zeroconf on a virtual
LAN: `invite` on h0 (a volunteer holding the key) and `join --code` on h1 (fresh, no key); h1
appears idle and runs tasks; a wrong code gets no key and fails clearly; a used or expired
code fails; the inviter stops after the allowed wrong guesses."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.gridkey import load_key
from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import CLI, Grid

pytestmark = pytest.mark.vlan


@pytest.fixture
def lan(vlan: object) -> Iterator[tuple[VirtualLan, Grid]]:
    lan: VirtualLan = vlan(4)  # type: ignore[operator]
    yield lan, Grid(lan)


def _fresh_env(host: Host) -> dict[str, str]:
    """A machine with no key: its key file is its own, not yet written."""
    return host.env({"BJGRID_KEY_FILE": str(host.home / "grid.key"), "BJGRID_PROFILE": "fast"})


def _invite(grid: Grid, host: Host, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = grid.popen_cli(host, "invite", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("pairing code: "), line
    return proc, line.split(": ", 1)[1].strip()


def _wrong(code: str) -> str:
    *head, last = code.split("-")
    return "-".join([*head, "walrus" if last != "walrus" else "acorn"])


def _pair(host: Host, *args: str) -> subprocess.CompletedProcess[bytes]:
    return host.run([*CLI, *args], timeout=60, env=_fresh_env(host))


def test_invite_then_join_with_the_code_and_the_new_host_runs_tasks(
    lan: tuple[VirtualLan, Grid], tmp_path: Path
) -> None:
    vl, grid = lan
    h0, h1, h2, observer = vl.hosts
    grid.join_all([h0], "--slots", "1")
    inviter, code = _invite(grid, h0)

    bad = _pair(h1, "keygen", "--from-code", _wrong(code))
    assert bad.returncode == 2, bad.stderr
    assert b"wrong code" in bad.stderr and b"Traceback" not in bad.stderr
    assert not (h1.home / "grid.key").exists()

    with open(h1.home / "join.log", "ab") as log:
        joiner = h1.popen(
            [*CLI, "join", "--code", code, "--slots", "1"],
            env=_fresh_env(h1),
            stdout=log,
            stderr=log,
        )
    grid.daemons[h1.name] = joiner
    assert inviter.wait(timeout=60) == 0, inviter.stderr.read() if inviter.stderr else ""
    grid.wait_daemon(h1, timeout=60)
    key_file = h1.home / "grid.key"
    assert load_key(key_file) == grid.key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    grid.wait_idle(observer, [h0, h1])

    used = _pair(h2, "keygen", "--from-code", code)
    assert used.returncode == 4, used.stderr
    assert not (h2.home / "grid.key").exists()

    app = tmp_path / "paired" / "app.json"
    app.parent.mkdir()
    app.write_text(json.dumps({
        "name": "paired", "workers": 2,
        "tasks": [{"id": f"t{i}", "command": f"sleep 0.3; echo {i} > o.txt",
                   "outputs": ["o.txt"]} for i in range(8)],
    }))  # fmt: skip
    r = grid.cli(observer, "submit", str(app), "--output", str(tmp_path / "out"), timeout=180)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    runs = (h1.home / "log" / "executions.jsonl").read_text().splitlines()
    assert runs, "the paired host ran no task"


def test_wrong_guesses_close_the_invitation_and_an_expired_code_fails(
    lan: tuple[VirtualLan, Grid],
) -> None:
    vl, grid = lan
    h0, h1, _, _ = vl.hosts
    inviter, code = _invite(grid, h0, "--max-wrong", "2")
    for _ in range(2):
        r = _pair(h1, "keygen", "--from-code", _wrong(code))
        assert r.returncode == 2, r.stderr
    assert inviter.wait(timeout=30) == 3
    late = _pair(h1, "keygen", "--from-code", code)
    assert late.returncode == 4, late.stderr
    assert not (h1.home / "grid.key").exists()

    inviter, code = _invite(grid, h0, "--expires", "2")
    assert inviter.wait(timeout=30) == 3
    time.sleep(0.5)
    expired = _pair(h1, "keygen", "--from-code", code)
    assert expired.returncode == 4, expired.stderr
    assert b"Traceback" not in expired.stderr
    assert not (h1.home / "grid.key").exists()
