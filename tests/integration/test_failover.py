"""Coordinators that survive (issue 4) on a virtual LAN: real daemons, real mDNS, kill -9,
cut cables, a restarted daemon resuming from its journal — with a CPU hog running beside.

Every check reads what the product itself recorded: results fetched with `bjgrid results`,
the journals (SQLite) of the machines that held the app, and the volunteers' own logs of
task starts (``log/executions.jsonl``), never files the tasks write for the test.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.testbed import Host, VirtualLan
from bonjourgrid.testbed.grid import Grid
from bonjourgrid.testbed.journal_view import journal_rows

pytestmark = pytest.mark.vlan

VOLUNTEERS = 8
RUNS = int(os.environ.get("BJGRID_FAILOVER_RUNS", "20"))
"""Seeded kill -9 runs (the issue asks for 20; set lower for a quick local check)."""
RESULTS_TIMEOUT = 120.0


def sweep_app(directory: Path, name: str, n: int, *, replicas: int, sleep: float) -> Path:
    """``n`` tasks, each writing i*i to sq-<i>.txt after ``sleep`` seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    app = {
        "version": 1,
        "name": name,
        "replicas": replicas,
        "sweeps": [
            {
                "template": {
                    "id": "t-{i}",
                    "command": f"sleep {sleep}; echo $(( {{i}} * {{i}} )) > sq-{{i}}.txt",
                    "outputs": ["sq-{i}.txt"],
                },
                "params": {"i": list(range(1, n + 1))},
            }
        ],
    }
    path = directory / "app.json"
    path.write_text(json.dumps(app))
    return path


class Lan:
    """h0 submits (no `join`: its submit's private daemon coordinates), h1..h8 volunteer,
    h9 is a desktop that fetches results."""

    def __init__(self, lan: VirtualLan) -> None:
        self.lan = lan
        self.grid = Grid(lan)
        self.h0 = lan.hosts[0]
        self.volunteers = lan.hosts[1 : VOLUNTEERS + 1]
        self.observer = lan.hosts[VOLUNTEERS + 1]


@pytest.fixture(scope="module")
def cpu_hog() -> Iterator[None]:
    """One busy loop at normal priority on this 2-core machine, for the whole module."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, cpu_hog: None) -> Iterator[Lan]:
    lan = VirtualLan(VOLUNTEERS + 2, base_dir=tmp_path_factory.mktemp("failover-lan"))
    try:
        lan.start()
        s = Lan(lan)
        s.grid.join_all(s.volunteers, "--slots", "1")
        s.grid.wait_idle(s.observer, s.volunteers)
        yield s
    finally:
        lan.close()


def first_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        chunk = proc.stdout.read1(1) if hasattr(proc.stdout, "read1") else proc.stdout.read(1)
        if not chunk:
            break
        line += chunk
    text = line.decode().strip()
    assert text.startswith("app "), f"no 'app <ID>' line: {text!r}"
    return text.split()[1]


def fetch_results(s: Lan, app: str, out: Path, timeout: float = RESULTS_TIMEOUT) -> dict[str, Any]:
    """`bjgrid results APP --output OUT` from the observer until the app is complete."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        r = s.grid.cli(s.observer, "results", app, "--output", str(out), timeout=90)
        last = r.stderr.decode(errors="replace")
        if r.returncode in (0, 1):
            assert r.returncode == 0, last
            return json.loads((out / "results.json").read_text())
        assert r.returncode in (3, 4), last
        time.sleep(0.5)
    # What every daemon said about the app: the diagnosis of a run that did not finish.
    said = []
    for h in s.lan.hosts:
        lines = [ln for ln in s.grid.log(h).splitlines() if app in ln]
        said.append(f"--- {h.name}:\n" + "\n".join(lines[-15:]))
    pytest.fail(f"app {app} not complete after {timeout} s: {last[-2000:]}\n" + "\n".join(said))


def holders(s: Lan, app: str) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    out = {}
    for h in [s.h0, *s.volunteers]:
        row, entries = journal_rows(h, app)
        if row is not None:
            out[h.name] = (row, entries)
    return out


def following(s: Lan, app: str) -> list[str]:
    """Volunteers whose journal holds ``app`` with at least one committed result."""
    return [
        h.name
        for h in s.volunteers
        for row, entries in [journal_rows(h, app)]
        if row is not None and any(e["k"] == "finish" for e in entries)
    ]


def taken_over(s: Lan, app: str) -> bool:
    """A volunteer holds ``app`` at a term above 1."""
    return any(
        (row := journal_rows(h, app)[0]) is not None and row["term"] > 1 for h in s.volunteers
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s; fail naming ``what`` after ``timeout`` (no failure when
    ``what`` is empty: the caller checks the outcome itself)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if what:
                pytest.fail(f"not seen within {timeout:g} s: {what}")
            return
        time.sleep(0.1)


def check_complete_and_correct(results: dict[str, Any], app: str, n: int, out: Path) -> None:
    tasks = results["tasks"]
    ids = Counter(t["id"] for t in tasks)
    assert len(ids) == n and set(ids.values()) == {1}, "a task is missing or listed twice"
    assert all(t["state"] == "done" for t in tasks), [t for t in tasks if t["state"] != "done"]
    for i in range(1, n + 1):
        assert (out / f"t-{i}" / f"sq-{i}.txt").read_text().strip() == str(i * i), i


def check_each_result_committed_once(entries: list[dict[str, Any]], n: int) -> Counter[int]:
    """In the final coordinator's journal: one accepted success per task; terms that did."""
    done = [e for e in entries if e["k"] == "finish" and e["exit_code"] == 0]
    per_task = Counter(e["task"] for e in done)
    assert len(per_task) == n and set(per_task.values()) == {1}, per_task.most_common(3)
    return Counter(e["term"] for e in done)


def executions(hosts: list[Host], app: str) -> Counter[str]:
    """Task starts per task, from the volunteers' own logs."""
    c: Counter[str] = Counter()
    for h in hosts:
        p = h.home / "log" / "executions.jsonl"
        if p.exists():
            for line in p.read_text().splitlines():
                e = json.loads(line)
                if e["app"] == app:
                    c[e["task"]] += 1
    return c


@pytest.mark.parametrize("seed", range(RUNS))
def test_coordinator_kill9_with_two_replicas_loses_no_result(
    shared: Lan, tmp_path: Path, seed: int
) -> None:
    s, n = shared, 200
    rng = random.Random(seed)
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    app_json = sweep_app(tmp_path / "app", f"kill-{seed}", n, replicas=2, sleep=0.02)
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app_json), "--output", str(tmp_path / "never"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = first_line(proc)
    time.sleep(rng.uniform(0.5, 2.5))
    s.h0.kill9()  # the coordinator's processes: submit and its daemon
    results = fetch_results(s, app, tmp_path / "out")
    check_complete_and_correct(results, app, n, tmp_path / "out")
    held = holders(s, app)
    final = [(h, e) for h, (row, e) in held.items() if row["role"] == "finished"]
    assert final, f"nobody finished the app: { {h: r for h, (r, _) in held.items()} }"
    terms = {row["term"] for row, _ in held.values()}
    # One takeover: one term above 1 among the holders. (A ballot that found no quorum in
    # time under load, then won the next term, claimed nothing: terms {1, 3} is one takeover.)
    if len({t for t in terms if t > 1}) != 1:  # what each daemon said, for the diagnosis
        said = [
            f"--- {h.name}:\n"
            + "\n".join(
                ln
                for ln in s.grid.log(h).splitlines()
                if app in ln and ("term" in ln or "elect" in ln or "vote" in ln)
            )[-3000:]
            for h in s.lan.hosts
        ]
        pytest.fail(
            f"exactly one takeover expected (no false ones): terms {terms}\n" + "\n".join(said)
        )
    for _host, entries in final:
        check_each_result_committed_once(entries, n)
    print(f"seed {seed}: final holders {[h for h, _ in final]}, terms {sorted(terms)}")


def test_partitioned_coordinator_steps_down_and_one_term_commits_each_result(
    shared: Lan, tmp_path: Path
) -> None:
    s, n = shared, 160
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    app_json = sweep_app(tmp_path / "app", "partition", n, replicas=2, sleep=0.3)
    out = tmp_path / "out"
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app_json), "--output", str(out),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    app = first_line(proc)
    # Cut the cable once both replicas follow the journal (a fixed sleep cut it, on a loaded
    # CI machine, before any replica was appointed: nobody could take over), and plug it back
    # once a replica has taken over (or after 30 s, which the term check below then reports).
    wait_for(lambda: len(following(s, app)) >= 2, 60, "two replicas following the journal")
    s.h0.link_down()
    try:
        wait_for(lambda: taken_over(s, app), 30, "")
    finally:
        s.h0.link_up()
    try:
        _, err = proc.communicate(timeout=RESULTS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"submit did not end: {err.decode(errors='replace')[-3000:]}")
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    check_complete_and_correct(json.loads((out / "results.json").read_text()), app, n, out)
    held = holders(s, app)
    final = [e for h, (row, e) in held.items() if row["role"] == "finished"]
    assert final, {h: r for h, (r, _) in held.items()}
    terms = check_each_result_committed_once(final[0], n)
    assert max(terms) == 2, terms
    old_row, _ = journal_rows(s.h0, app)
    assert old_row is not None and old_row["role"] == "stepped-down", old_row
    print(f"commits by term: {dict(terms)}; old coordinator: {old_row}")


def test_restarted_coordinator_daemon_resumes_without_rerunning_finished_tasks(
    shared: Lan, tmp_path: Path
) -> None:
    s, n = shared, 60
    s.grid.wait_idle(s.observer, s.volunteers, timeout=60)
    app_json = sweep_app(tmp_path / "app", "resume", n, replicas=0, sleep=0.3)
    s.grid.join(s.h0, "--slots", "1")
    s.grid.wait_daemon(s.h0)
    proc = s.grid.popen_cli(
        s.h0, "submit", str(app_json), "--output", str(tmp_path / "never"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    app = first_line(proc)
    time.sleep(2.5)
    s.h0.kill9()  # the daemon (and the submit attached to it)
    s.grid.daemons.pop(s.h0.name, None)
    _, entries = journal_rows(s.h0, app)
    done_before = {e["task"] for e in entries if e["k"] == "finish" and e["exit_code"] == 0}
    assert 0 < len(done_before) < n, f"kill landed outside the run: {len(done_before)} done"
    s.grid.join(s.h0, "--slots", "1")
    s.grid.wait_daemon(s.h0)
    out = tmp_path / "out"
    r = s.grid.cli(s.h0, "submit", str(app_json), "--output", str(out), timeout=RESULTS_TIMEOUT)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    assert r.stdout.decode().splitlines()[0] == f"app {app}", "did not re-attach to the app"
    check_complete_and_correct(json.loads((out / "results.json").read_text()), app, n, out)
    runs = executions([s.h0, *s.volunteers], app)
    rerun = sorted(t for t in done_before if runs[t] != 1)
    assert not rerun, f"finished before the kill, yet ran again: {rerun} ({runs})"
    s.grid.stop(s.h0)
    print(f"{len(done_before)} tasks done before the kill, none rerun")
