"""Come back later, on a virtual LAN (real `bjgrid join` volunteers, real mDNS): a machine
that does not volunteer submits with `--detach` (a background daemon coordinates it),
`bjgrid apps` shows counts, age and the waiting reason, `bjgrid watch` re-attaches and
writes the outputs, `results`/`cancel` answer in JSON, and an app with no fitting volunteer
waits with the right reason, then runs when a volunteer that fits joins."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid, patience
from bonjourgrid.testbed.submit_output import submit_json

pytestmark = pytest.mark.vlan


class Lan:
    def __init__(self, lan: VirtualLan) -> None:
        self.lan = lan
        self.grid = Grid(lan)
        self.volunteers = lan.hosts[:2]
        self.submitter = lan.hosts[2]  # never joins
        self.late = lan.hosts[3]  # joins mid-test, with the attribute the waiting app needs
        self.background: list[int] = []


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    lan = VirtualLan(4, base_dir=tmp_path_factory.mktemp("come-back"))
    s: Lan | None = None
    try:
        lan.start()
        s = Lan(lan)
        s.grid.join_all(s.volunteers, "--slots", "1")
        s.grid.wait_idle(s.volunteers[0], s.volunteers)
        yield s
    finally:
        if s is not None:
            for pid in s.background:  # the background daemons our submits started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        lan.close()


def write_app(folder: Path, name: str, n: int, seconds: float, **top: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [{"id": f"t{i}", "command": f"sleep {seconds}; echo {i} > o.txt",
              "outputs": ["o.txt"]} for i in range(n)]  # fmt: skip
    (folder / "app.json").write_text(json.dumps({"name": name, "tasks": tasks, **top}))
    return folder


def cli(s: Lan, host: Host, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return s.grid.cli(host, *args, timeout=timeout)


def detach(s: Lan, app: Path) -> str:
    r = cli(s, s.submitter, "submit", str(app), "--detach", "--json")
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, err[-3000:]
    doc = json.loads(r.stdout)  # exactly one object
    assert doc["detached"] is True and doc["exit_status"] == 0
    m = re.search(r"started a background daemon \(pid (\d+);", err)
    if m:
        s.background.append(int(m.group(1)))
    return str(doc["app"])


def apps_row(s: Lan, app: str) -> dict[str, object]:
    r = cli(s, s.submitter, "apps", "--json")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    rows = {row["app"]: row for row in json.loads(r.stdout)}
    assert app in rows, rows
    return rows[app]


def test_detach_without_join_then_apps_then_watch_writes_the_outputs(
    shared: Lan, tmp_path: Path
) -> None:
    s = shared
    app = detach(s, write_app(tmp_path / "a", "later", 6, 1.0, workers=2))
    assert not (s.submitter.home / "log" / "reservations.jsonl").exists()  # offers no slots

    row = apps_row(s, app)
    assert {"done", "running", "waiting", "failed", "age", "waiting_reason"} <= set(row)
    assert row["coordinator"] == s.submitter.name
    assert isinstance(row["age"], float) and 0 <= row["age"] < 120
    table = cli(s, s.submitter, "apps").stdout.decode()
    assert re.search(rf"^{app}\s+later\s.*\s(\d+s|\d+m)\s*$", table, re.M), table

    out = tmp_path / "out"
    r = cli(s, s.submitter, "watch", app, "--json", "-o", str(out), timeout=patience(120))
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    doc = json.loads(r.stdout)
    assert doc["app"] == app and doc["outcome"] == "finished" and doc["exit_status"] == 0
    assert sorted((out / f"t{i}" / "o.txt").read_text() for i in range(6)) == [
        f"{i}\n" for i in range(6)
    ]
    again = cli(s, s.submitter, "results", app, "--json", "-o", str(tmp_path / "again"))
    assert again.returncode == 0
    assert json.loads(again.stdout)["results"] == doc["results"]


def test_watch_of_an_unknown_app_is_4_with_one_json_object(shared: Lan) -> None:
    r = cli(shared, shared.submitter, "watch", "deadbeef", "--json")
    assert r.returncode == 4, r.stderr.decode(errors="replace")
    doc = json.loads(r.stdout)
    assert doc["app"] == "deadbeef" and doc["exit_status"] == 4 and doc["error"]


def test_an_app_nobody_fits_waits_saying_why_then_runs_when_a_fitting_volunteer_joins(
    shared: Lan, tmp_path: Path
) -> None:
    s = shared
    needs = {"requirements": {"attributes": {"site": "late"}}}
    app = detach(s, write_app(tmp_path / "w", "waiter", 2, 0.2, **needs))
    deadline = time.monotonic() + patience(40)
    row = apps_row(s, app)
    while "no volunteer has site=late" not in str(row["waiting_reason"]):
        assert time.monotonic() < deadline, row
        time.sleep(0.5)
    assert row["waiting"] == 2 and row["done"] == 0
    assert "(2 seen)" in str(row["waiting_reason"]), row
    time.sleep(25)  # past the old 20 s recruit timeout: still waiting, not failed
    assert apps_row(s, app)["state"] not in ("failed", "cancelled")

    config = s.late.home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "volunteer.toml").write_text('[attributes]\nsite = "late"\n')
    s.grid.join(s.late, "--slots", "1")
    r = cli(s, s.submitter, "watch", app, "-o", str(tmp_path / "out"), timeout=patience(120))
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {t["worker"] for t in results["tasks"]} == {s.late.name}


def test_cancel_json_then_results_and_submit_share_status_3(shared: Lan, tmp_path: Path) -> None:
    s = shared
    nowhere = {"requirements": {"attributes": {"site": "nowhere"}}}
    app = detach(s, write_app(tmp_path / "c", "doomed", 2, 0.1, **nowhere))
    r = cli(s, s.submitter, "cancel", app, "--json")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert json.loads(r.stdout) == {
        "app": app, "cancelled": True, "message": f"app {app} cancelled", "exit_status": 0,
    }  # fmt: skip
    deadline = time.monotonic() + patience(30)
    while True:
        res = cli(s, s.submitter, "results", app, "--json", "-o", str(tmp_path / "r"))
        doc = json.loads(res.stdout)
        if doc["outcome"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res.returncode == 3 and doc["outcome"] == "cancelled", doc

    fast = write_app(tmp_path / "f", "fast", 1, 0.1, **nowhere)
    failed = cli(
        s, s.submitter, "submit", str(fast), "--wait-timeout", "3", "--json",
        "-o", str(tmp_path / "fo"),
    )  # fmt: skip
    assert failed.returncode == 3, failed.stderr.decode(errors="replace")[-3000:]
    fdoc = submit_json(failed.stdout)
    assert "no volunteer has site=nowhere" in fdoc["reason"], fdoc
    later = cli(s, s.submitter, "results", fdoc["app"], "--json", "-o", str(tmp_path / "fr"))
    assert later.returncode == 3 == json.loads(later.stdout)["exit_status"]


def test_the_submitting_host_loses_the_lan_for_30_s_and_its_app_carries_on(
    shared: Lan, tmp_path: Path
) -> None:
    """A laptop's link goes down mid-app (30 s), then up: the app is not lost, the tasks
    finish and `submit` brings every result home."""
    s = shared
    for h in s.lan.hosts[:2]:
        assert s.grid.daemons[h.name].poll() is None
    app = write_app(tmp_path / "l", "laptop", 8, 2.0, workers=2)
    out = tmp_path / "out"
    proc = s.grid.popen_cli(
        s.submitter, "submit", str(app), "--json", "-o", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(5)  # the app is running on the volunteers
        assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")[-3000:]
        s.submitter.link_down()
        time.sleep(30)
        s.submitter.link_up()
        stdout, stderr = proc.communicate(timeout=patience(240))
    finally:
        s.submitter.link_up()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-4000:]
    doc = submit_json(stdout)
    assert doc["outcome"] == "finished", doc
    assert sorted((out / f"t{i}" / "o.txt").read_text() for i in range(8)) == [
        f"{i}\n" for i in range(8)
    ]
