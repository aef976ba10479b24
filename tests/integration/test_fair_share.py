"""Matchmaking and fair share on a virtual LAN: real `bjgrid join` volunteers, real mDNS.

Proves issue 7's coordinator side: three users' apps converge to equal shares of 6 volunteers
(from one app holding them all) and all complete; an app whose tasks need an attribute nobody
declares says so while it waits, then fails cleanly; an app needing a custom attribute runs
only on the volunteers that declare it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid, reservations

pytestmark = pytest.mark.vlan

VOLUNTEERS = 6
LAB2 = 2
"""h1 and h2 declare site=lab2; the others site=lab1."""
SUBMIT_TIMEOUT = 150.0
CONVERGE_LIMIT_S = 15.0
"""The issue's figure: within 15 s each of three users holds 2 ± 1 of the 6 machines."""


class Lan:
    def __init__(self, lan: VirtualLan) -> None:
        self.grid = Grid(lan)
        self.volunteers = lan.hosts[:VOLUNTEERS]
        self.users = lan.hosts[VOLUNTEERS : VOLUNTEERS + 3]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    lan = VirtualLan(VOLUNTEERS + 3, base_dir=tmp_path_factory.mktemp("fair-lan"))
    try:
        lan.start()
        s = Lan(lan)
        for i, h in enumerate(s.volunteers):
            site = "lab2" if i < LAB2 else "lab1"
            extra = '"Bad Key" = "x"\n' if i == LAB2 else ""
            (h.home / "config").mkdir(parents=True, exist_ok=True)
            (h.home / "config" / "volunteer.toml").write_text(
                f'[attributes]\nsite = "{site}"\ngpu = "none"\n{extra}'
            )
        s.grid.join_all(s.volunteers, "--slots", "1")
        s.grid.wait_idle(s.volunteers[0], s.volunteers)
        yield s
    finally:
        lan.close()


def write_app(folder: Path, name: str, n: int, seconds: float, **top: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [{"id": f"t{i}", "command": ["sleep", str(seconds)]} for i in range(n)]
    (folder / "app.json").write_text(json.dumps({"name": name, "tasks": tasks, **top}))
    return folder / "app.json"


def submit(
    grid: Grid, host: Host, app_json: Path, out: Path, *args: str
) -> subprocess.Popen[bytes]:
    return grid.popen_cli(
        host, "submit", str(app_json), "--output", str(out), *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(proc: subprocess.Popen[bytes], timeout: float = SUBMIT_TIMEOUT) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"submit did not end in {timeout} s: {err.decode(errors='replace')[-3000:]}")
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def first_line_app(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode(errors="replace").strip()
    m = re.fullmatch(r"app (\S+)", line)
    assert m, f"first stdout line is not 'app <ID>': {line!r}"
    return m.group(1)


def holders(volunteers: list[Host]) -> dict[str, str | None]:
    """Which app each volunteer serves now, by its own reservation log."""
    now: dict[str, str | None] = {}
    for h in volunteers:
        app = None
        for e in reservations(h):
            if e["event"] == "reserved":
                app = str(e["app"])
            elif e["event"] == "released" and e["app"] == app:
                app = None
        now[h.name] = app
    return now


def held(volunteers: list[Host], app: str) -> int:
    return sum(a == app for a in holders(volunteers).values())


def reserved_by(volunteers: list[Host], app: str) -> set[str]:
    return {
        h.name for h in volunteers for e in reservations(h)
        if e["app"] == app and e["event"] == "reserved"
    }  # fmt: skip


def test_three_users_converge_to_equal_shares_and_all_complete(shared: Lan, tmp_path: Path):
    grid, vols = shared.grid, shared.volunteers
    grid.wait_idle(vols[0], vols)
    h7, h8, h9 = shared.users
    first = submit(grid, h7, write_app(tmp_path / "a", "alpha", 60, 1.0), tmp_path / "out-a")
    a = first_line_app(first)
    deadline = time.monotonic() + 30
    while held(vols, a) < VOLUNTEERS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert held(vols, a) == VOLUNTEERS, holders(vols)

    started = time.monotonic()
    rivals = [
        submit(grid, h8, write_app(tmp_path / "b", "beta", 24, 1.0), tmp_path / "out-b"),
        submit(grid, h9, write_app(tmp_path / "c", "gamma", 24, 1.0), tmp_path / "out-c"),
    ]
    apps = [a, *(first_line_app(p) for p in rivals)]
    converged: float | None = None
    timeline: list[tuple[float, list[int]]] = []
    while time.monotonic() - started < 3 * CONVERGE_LIMIT_S:
        counts = [held(vols, x) for x in apps]
        timeline.append((round(time.monotonic() - started, 2), counts))
        if all(1 <= n <= 3 for n in counts):
            converged = time.monotonic() - started
            break
        time.sleep(0.1)
    print(f"fair share: converged {converged} s after two rivals submitted; {timeline[-5:]}")
    assert converged is not None, timeline[-10:]
    assert converged < CONVERGE_LIMIT_S, timeline

    # A little later the shares still hold (nobody grabbed everything back).
    time.sleep(2.0)
    later = [held(vols, x) for x in apps]
    assert all(1 <= n <= 3 for n in later), later

    for proc, out, n in ((first, "out-a", 60), (rivals[0], "out-b", 24), (rivals[1], "out-c", 24)):
        code, _, stderr = finish(proc)
        assert code == 0, stderr[-3000:]
        results = json.loads((tmp_path / out / "results.json").read_text())
        assert len(results["tasks"]) == n
        assert all(t["state"] == "done" for t in results["tasks"]), results
    for x in apps[1:]:
        assert len(reserved_by(vols, x)) >= 2


def test_unmeetable_attribute_says_what_nobody_has_then_fails_cleanly(shared: Lan, tmp_path: Path):
    grid, vols = shared.grid, shared.volunteers
    grid.wait_idle(vols[0], vols)
    app_json = write_app(
        tmp_path / "app", "nowhere", 2, 0.1, requirements={"attributes": {"site": "lab9"}}
    )
    t0 = time.monotonic()
    # Apps wait for volunteers by default; --wait-timeout makes this one fail fast.
    proc = submit(grid, shared.users[1], app_json, tmp_path / "out", "--wait-timeout", "20")
    code, stdout, stderr = finish(proc, timeout=60)
    took = time.monotonic() - t0
    print(f"unmeetable app: exit {code} after {took:.1f} s; stderr: {stderr[-600:]}")
    assert code == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    assert re.search(r"waiting: no volunteer has site=lab9 \(\d+ seen\)", stderr), stderr
    assert f"no volunteer has site=lab9 ({VOLUNTEERS} seen)" in stderr, stderr
    assert "no volunteer took the app within its wait timeout (20 s)" in stderr, stderr
    app = stdout.splitlines()[0].split()[1]
    assert reserved_by(vols, app) == set()


def test_custom_attribute_app_runs_only_where_declared(shared: Lan, tmp_path: Path):
    grid, vols = shared.grid, shared.volunteers
    grid.wait_idle(vols[0], vols)
    app_json = write_app(
        tmp_path / "app", "lab2only", 8, 0.3, requirements={"attributes": {"site": "lab2"}}
    )
    proc = submit(grid, shared.users[0], app_json, tmp_path / "out")
    code, stdout, stderr = finish(proc, timeout=90)
    assert code == 0, stderr[-3000:]
    app = stdout.splitlines()[0].split()[1]
    lab2 = {h.name for h in vols[:LAB2]}
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {t["worker"] for t in results["tasks"]} <= lab2, results
    assert reserved_by(vols, app) <= lab2
    assert reserved_by(vols, app), "no reservation logged"
    # The malformed attribute was left out of the TXT record, with a log line.
    assert "attribute left out of the TXT record" in grid.log(vols[LAB2])
