"""`bjgrid pause` on a virtual LAN with real processes (issue 14, item 8): a paused
volunteer's running task is stopped at once, continues on `bjgrid resume`, and paused
again past the owner policy's max_suspension it is given back and completes on the other
volunteer; the app finishes with every result, nothing lost. Meanwhile `bjgrid status` on
the submitting host shows the machine paused.

h0 submits (no join); h1 and h2 volunteer with one slot and a short max_suspension."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bonjourgrid.testbed import Host, VirtualLan, available
from bonjourgrid.testbed.grid import Grid, reservations
from bonjourgrid.testbed.submit_output import submit_json

pytestmark = pytest.mark.vlan

MAX_SUSPENSION = 4.0
LATENCY_MAX = 3.0
"""Pause to stopped: the policy samples within its poll interval (0.2 s in the fast
profile); asserted with a margin for a loaded box."""


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Grid, Path, list[Host]]]:
    ok, why = available()
    if not ok:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("pause-lan")
    lan = VirtualLan(3, base_dir=base, name="paus")
    try:
        lan.start()
        grid = Grid(lan)
        for h in lan.hosts[1:]:
            (h.home / "config").mkdir(parents=True, exist_ok=True)
            (h.home / "config" / "volunteer.toml").write_text(
                f"[policy]\nmax_suspension = {MAX_SUSPENSION}\nresume_after = 0.5\n"
            )
        grid.join_all(lan.hosts[1:], "--slots", "1")
        grid.wait_idle(lan.hosts[0], lan.hosts[1:])
        yield grid, base, lan.hosts
    finally:
        lan.close()


def _find(argv: list[str], timeout: float) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["cmdline"]):
            if p.info["cmdline"] == argv:
                return p
        time.sleep(0.05)
    raise TimeoutError(f"no process {argv}")


def _until_stopped(p: psutil.Process, stopped: bool, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if (p.status() == psutil.STATUS_STOPPED) == stopped:
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError(f"process {p.pid} {'not stopped' if stopped else 'still stopped'}")


def _ran_on(host: Host, task: str) -> list[int]:
    log = host.home / "log" / "executions.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return [e["attempt"] for e in map(json.loads, filter(str.strip, lines)) if e["task"] == task]


def _pause(grid: Grid, host: Host, word: str) -> dict[str, object]:
    r = grid.cli(host, word, "--json", timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    doc = json.loads(r.stdout)
    assert isinstance(doc, dict)
    return doc


def _status_of(grid: Grid, h0: Host, host: Host, paused: bool, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in grid.status(h0) if r["host"] == host.name]
        if rows and rows[0].get("paused") is paused:
            return rows[0]
        assert time.monotonic() < deadline, f"status never showed paused={paused}: {rows}"
        time.sleep(0.5)


def test_pause_stops_resume_continues_and_a_long_pause_gives_the_task_back(bed) -> None:  # type: ignore[no-untyped-def]
    grid, base, (h0, *volunteers) = bed
    argv = ["sleep", "7.413"]
    folder = base / "app"
    folder.mkdir()
    tasks = [{"id": "long", "command": "sleep 7.413 && echo ok > out.txt",
              "outputs": ["out.txt"], "retries": 0}]  # fmt: skip
    (folder / "app.json").write_text(json.dumps({"name": "pause", "workers": 1, "tasks": tasks}))
    out = base / "out"
    proc = grid.popen_cli(h0, "submit", str(folder), "--json", "-o", str(out),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    paused: Host | None = None
    try:
        task = _find(argv, timeout=60)
        paused = next(h for h in volunteers if _ran_on(h, "long"))
        other = next(h for h in volunteers if h is not paused)

        start = time.monotonic()
        got = _pause(grid, paused, "pause")
        assert got == {"paused": True, "daemon": True, "policy": "paused", "tasks": 1}
        latency = time.monotonic() - start + _until_stopped(task, True, LATENCY_MAX)
        row = _status_of(grid, h0, paused, True, timeout=20)
        assert row["owner"] == "busy" and row["state"] == "worker"
        assert _pause(grid, paused, "resume")["policy"] == "ok"
        _until_stopped(task, False, 10)
        assert task.is_running()  # continued, not killed
        _status_of(grid, h0, paused, False, timeout=20)
        print(f"\npause -> task stopped {latency:.3f} s")
        assert latency < LATENCY_MAX

        _pause(grid, paused, "pause")  # and this time for longer than max_suspension
        _until_stopped(task, True, 10)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if paused is not None:
            grid.cli(paused, "resume", timeout=60)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    doc = submit_json(stdout)
    row = {t["id"]: t for t in doc["results"]["tasks"]}["long"]
    assert row["state"] == "done" and row["worker"] == other.name, row
    assert (out / "long" / "out.txt").read_text() == "ok\n"
    assert _ran_on(paused, "long") == [1] and _ran_on(other, "long") == [2]
    assert not task.is_running()  # the given-back attempt was killed on the paused machine
    released = [e for e in reservations(paused) if e["event"] == "released"]
    assert released and "owner" in str(released[-1]["reason"]), released
