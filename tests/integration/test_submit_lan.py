"""`bjgrid submit` on a virtual LAN: real `bjgrid join` volunteers, real mDNS, real processes.

Proves issue 3's "done when": a 40-task sweep with a fan-in, volunteers back to idle right
after `submit` exits, two users at once never sharing a volunteer, a desktop that volunteers
and submits with one mDNS stack, and a task rerun elsewhere when its worker is killed.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid, reservations

pytestmark = pytest.mark.vlan

APPS = Path(__file__).resolve().parent.parent / "apps"
VOLUNTEERS = 6
SUBMIT_TIMEOUT = 120.0
IDLE_MARGIN_S = 6.0
"""The issue's figure is 2 s; asserted with a margin for a loaded 2-core test box."""


class Lan:
    """One shared LAN: h1..h6 volunteers, h7 and h8 submit without `join`, h9 a spare desktop."""

    def __init__(self, lan: VirtualLan) -> None:
        self.lan = lan
        self.grid = Grid(lan)
        self.hosts = lan.hosts
        self.volunteers = lan.hosts[:VOLUNTEERS]
        self.h7, self.h8, self.h9 = lan.hosts[VOLUNTEERS : VOLUNTEERS + 3]

    @property
    def volunteer_names(self) -> set[str]:
        return {h.name for h in self.volunteers}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    lan = VirtualLan(VOLUNTEERS + 3, base_dir=tmp_path_factory.mktemp("submit-lan"))
    try:
        lan.start()
        s = Lan(lan)
        s.grid.join_all(s.volunteers, "--slots", "1")
        s.grid.wait_idle(s.volunteers[0], s.volunteers)
        yield s
    finally:
        lan.close()


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


def app_id_of(stdout: str) -> str:
    first = stdout.splitlines()[0] if stdout else ""
    m = re.fullmatch(r"app (\S+)", first)
    assert m, f"first stdout line is not 'app <ID>': {stdout[:300]!r}"
    return m.group(1)


def check_results_shape(results: dict[str, Any], app: str, name: str) -> list[dict[str, Any]]:
    """DESIGN.md's results.json: exactly these keys, with these types."""
    assert set(results) == {"app", "name", "tasks", "outcome"}  # outcome: added by issue 14
    assert results["app"] == app
    assert results["name"] == name
    tasks = results["tasks"]
    assert isinstance(tasks, list)
    for t in tasks:
        design = {"id", "state", "exit_code", "attempts", "worker", "seconds"}
        assert set(t) == design | {"reason", "started", "ended"}, t  # added by issue 14
        assert t["state"] in ("done", "failed")
        assert isinstance(t["attempts"], int) and t["attempts"] >= 1
        assert isinstance(t["worker"], str)
        if t["state"] == "done":
            assert t["exit_code"] == 0
            assert isinstance(t["seconds"], (int, float)) and t["seconds"] >= 0
    return tasks


def reservation_intervals(host: Host) -> list[tuple[str, float, float]]:
    """(app, reserved at, released at) from the volunteer's own log; an open one ends at inf."""
    out: list[tuple[str, float, float]] = []
    open_: dict[str, float] = {}
    for e in reservations(host):
        app, t = str(e["app"]), float(e["t"])  # type: ignore[arg-type]
        if e["event"] == "reserved":
            open_.setdefault(app, t)
        elif e["event"] == "released" and app in open_:
            out.append((app, open_.pop(app), t))
    out.extend((app, t, float("inf")) for app, t in open_.items())
    return sorted(out, key=lambda iv: iv[1])


class Sampler:
    """Calls ``sample()`` in a thread until stopped; keeps what it returns (errors included)."""

    def __init__(self, sample: Callable[[], object], period: float = 0.1) -> None:
        self.samples: list[object] = []
        self._sample, self._period = sample, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self._sample())
            except Exception as e:  # a failed sample is reported by the test, not lost
                self.samples.append(e)
            self._stop.wait(self._period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_sweep_with_fan_in_gives_correct_outputs_and_volunteers_return_to_idle(
    shared: Lan, tmp_path: Path
) -> None:
    grid, observer = shared.grid, shared.volunteers[0]
    out = tmp_path / "out"
    with Sampler(lambda: grid.status(observer)) as seen:
        proc = submit(grid, shared.h7, APPS / "sweep40" / "app.json", out)
        code, stdout, stderr = finish(proc)
        exited = time.time()
    assert code == 0, stderr[-3000:]
    app = app_id_of(stdout)

    # Every volunteer back to idle, as `bjgrid status` shows it, soon after submit exited.
    idle_after: float | None = None
    while time.time() - exited < 30:
        rows = grid.status(observer)
        if shared.volunteer_names <= {
            r["host"] for r in rows if r["state"] == "idle" and r["reachable"]
        }:
            idle_after = time.time() - exited
            break
    released = [
        float(e["t"]) - exited  # type: ignore[arg-type]
        for h in shared.volunteers for e in reservations(h)
        if e["app"] == app and e["event"] == "released"
    ]  # fmt: skip
    print(
        f"all idle in status {idle_after} s after submit exited; "
        f"last release logged {max(released, default=float('nan')):+.3f} s from the exit"
    )
    assert idle_after is not None and idle_after < IDLE_MARGIN_S, rows

    # Outputs: each task's declared output, stdout and stderr; the fan-in combines all 40.
    results = json.loads((out / "results.json").read_text())
    tasks = check_results_shape(results, app, "sweep40")
    assert sorted(t["id"] for t in tasks) == sorted([f"t-{i}" for i in range(1, 41)] + ["total"])
    assert all(t["state"] == "done" and t["attempts"] == 1 for t in tasks), tasks
    assert {t["worker"] for t in tasks} <= shared.volunteer_names
    for i in range(1, 41):
        d = out / f"t-{i}"
        assert (d / f"sq-{i}.txt").read_text() == f"{i * i}\n"
        assert (d / "stdout").read_text() == f"square {i}\n"
        assert (d / "stderr").read_text() == f"stderr of {i}\n"
    assert (out / "total" / "total.txt").read_text() == f"40 {sum(i * i for i in range(1, 41))}\n"
    assert (out / "total" / "stdout").read_text() == "summed 40 files\n"
    assert (out / "total" / "stderr").exists()

    # While it ran, status on the LAN showed the app id on its workers.
    errors = [s for s in seen.samples if isinstance(s, Exception)]
    serving = {
        (r["host"], r["coordinator"]) for s in seen.samples if isinstance(s, list)
        for r in s if r["app"] == app and r["state"] == "worker"
    }  # fmt: skip
    assert serving, f"app {app} never seen on a worker: {len(seen.samples)} samples, {errors[:3]}"
    assert {h for h, _ in serving} <= shared.volunteer_names
    assert all(c for _, c in serving), serving


def test_two_users_at_once_never_share_a_volunteer_and_use_all_six(
    shared: Lan, tmp_path: Path
) -> None:
    grid = shared.grid
    grid.wait_idle(shared.volunteers[0], shared.volunteers)
    app_json = APPS / "sleepy" / "app.json"
    outs = {h.name: tmp_path / h.name for h in (shared.h7, shared.h8)}
    procs = {
        h.name: submit(grid, h, app_json, outs[h.name], "--workers", "4")
        for h in (shared.h7, shared.h8)
    }
    ended = {name: finish(p) for name, p in procs.items()}
    for name, (code, _, stderr) in ended.items():
        assert code == 0, f"{name}: {stderr[-3000:]}"
    apps = {name: app_id_of(stdout) for name, (_, stdout, _) in ended.items()}
    assert len(set(apps.values())) == 2

    used: set[str] = set()
    results: dict[str, dict[str, Any]] = {}
    for name, app in apps.items():
        results[name] = json.loads((outs[name] / "results.json").read_text())
        tasks = check_results_shape(results[name], app, "sleepy")
        assert len(tasks) == 30 and all(t["state"] == "done" for t in tasks)
        used |= {str(t["worker"]) for t in tasks}
    assert used == shared.volunteer_names

    grid.wait_idle(shared.volunteers[0], shared.volunteers)
    for h in shared.volunteers:
        ivs = [iv for iv in reservation_intervals(h) if iv[0] in apps.values()]
        for (a1, s1, e1), (a2, s2, e2) in itertools.pairwise(ivs):
            assert s2 >= e1, f"{h.name} served {a1} ({s1}..{e1}) and {a2} ({s2}..{e2}) at once"
        assert all(e != float("inf") for _, _, e in ivs), f"{h.name} still reserved: {ivs}"
        for name, app in apps.items():  # the log is complete: every app it served is in it
            if any(t["worker"] == h.name for t in results[name]["tasks"]):
                assert app in {a for a, _, _ in ivs}, f"{h.name} ran {app} but never logged it"


def mdns_pids(host: Host) -> set[int]:
    r = subprocess.run(
        ["ip", "netns", "exec", host.netns, "ss", "-uanp", "sport = :5353"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return {int(p) for p in re.findall(r"pid=(\d+)", r.stdout)}


def test_desktop_that_volunteers_submits_through_its_own_daemon(
    shared: Lan, tmp_path: Path
) -> None:
    grid, desk = shared.grid, shared.h9
    grid.join(desk, "--slots", "1")
    try:
        grid.wait_daemon(desk)
        everyone = [*shared.volunteers, desk]
        grid.wait_idle(desk, everyone)
        daemon_pid = grid.daemons[desk.name].pid
        out = tmp_path / "out"
        with Sampler(lambda: mdns_pids(desk), period=0.2) as sockets, \
                Sampler(lambda: grid.status(desk)) as seen:  # fmt: skip
            proc = submit(grid, desk, APPS / "sleepy" / "app.json", out, "--workers", "2")
            code, stdout, stderr = finish(proc)
        assert code == 0, stderr[-3000:]
        app = app_id_of(stdout)
        tasks = check_results_shape(json.loads((out / "results.json").read_text()), app, "sleepy")
        assert all(t["state"] == "done" for t in tasks)
        assert {t["worker"] for t in tasks} <= {h.name for h in everyone}

        # One mDNS stack on the desktop: only its `bjgrid join` daemon holds port 5353.
        pid_sets = [s for s in sockets.samples if isinstance(s, set)]
        assert pid_sets, sockets.samples[:3]
        assert set().union(*pid_sets) == {daemon_pid}, pid_sets

        # While it ran, the desktop listed the app under its own `coordinates`.
        mine = [r for s in seen.samples if isinstance(s, list) for r in s if r["host"] == desk.name]
        assert any(app in r["coordinates"] for r in mine), (mine[:3], seen.samples[:3])
        grid.wait_idle(desk, everyone)
    finally:
        grid.stop(desk)


def test_task_on_a_killed_worker_is_rerun_elsewhere(
    vlan: Callable[..., VirtualLan], tmp_path: Path
) -> None:
    lan = vlan(4)
    grid = Grid(lan)
    vols, submitter = lan.hosts[:3], lan.hosts[3]
    grid.join_all(vols, "--slots", "1")
    grid.wait_idle(vols[0], vols)

    out = tmp_path / "out"
    proc = submit(grid, submitter, APPS / "slow" / "app.json", out)
    # The volunteers' own logs say which task started where (log/executions.jsonl).
    deadline = time.monotonic() + 60
    started: tuple[str, Host] | None = None
    while started is None and time.monotonic() < deadline and proc.poll() is None:
        for h in vols:
            log = h.home / "log" / "executions.jsonl"
            lines = log.read_text().splitlines() if log.exists() else []
            if lines:
                started = (json.loads(lines[0])["task"], h)
                break
        time.sleep(0.05)
    assert started is not None, "no task started"
    task, victim = started
    victim_name = victim.name
    victim.kill9()

    code, stdout, stderr = finish(proc)
    assert code == 0, stderr[-3000:]
    app = app_id_of(stdout)
    results = json.loads((out / "results.json").read_text())
    ids = [t["id"] for t in results["tasks"]]
    assert len(ids) == len(set(ids)), "a task appears twice in results.json"
    tasks = {t["id"]: t for t in check_results_shape(results, app, "slow")}
    assert all(t["state"] == "done" for t in tasks.values()), tasks
    assert tasks[task]["attempts"] >= 2, tasks[task]
    assert tasks[task]["worker"] != victim_name, tasks[task]
    assert (out / task / "where.txt").read_text().strip() == tasks[task]["worker"]
    print(
        f"{task} first ran on {victim_name} (killed), then on {tasks[task]['worker']} "
        f"(attempts {tasks[task]['attempts']})"
    )
