"""`bjgrid submit --backend boinc` on a virtual LAN: real `bjgrid join` volunteers whose own,
unmodified boinc-client processes compute for the project the coordinator serves.

Proves issue 6's "done when": a 12-task app with input files, declared outputs and a fan-in
gives the same outputs and results.json as on the embedded backend, and every volunteer is
detached and idle afterwards; a tampered executable fails its task with the client's reason;
a volunteer killed mid-task has its result reissued to another and the app completes; the
coordinator's host killed -9 with one replica: the replica serves the project from its own
address with the app's same key, the clients re-attach, every result is committed once.

One LAN for the module: h1-h3 volunteers (``--slots 1``), h4 submits (no ``join``: submit
runs a private daemon). h1 and h2 let bjgrid start a boinc client of its own per app; h3's
daemon uses a client the test started by hand in h3, with a project of its own attached
(an owner's BOINC project that bjgrid must leave alone).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bonjourgrid.ce_backends.boinc.client import BoincClient, boinc_executable
from bonjourgrid.ce_backends.boinc.project import Project
from bonjourgrid.ce_backends.boinc.signing import CodeSignKey
from bonjourgrid.ce_backends.boinc.worker import DIR_ENV, PORT_ENV
from bonjourgrid.testbed import Host, VirtualLan, available
from bonjourgrid.testbed.grid import CLI, Grid
from bonjourgrid.testbed.journal_view import journal_apps, journal_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ce_backends" / "boinc"))
from boinc_helpers import IN_CI, netns_socket_factory

pytestmark = pytest.mark.vlan

SUBMIT_TIMEOUT = 150.0
"""Generous: the 12-task app takes ~1 min here (BOINC's 5 s poll period dominates)."""
OWNER_RPC_PORT = 31420


@dataclass
class Bed:
    lan: VirtualLan
    grid: Grid
    volunteers: list[Host]
    submitter: Host
    owner_client: BoincClient
    owner_project: Project
    app_json: Path
    figures: dict[str, float]


def _require() -> None:
    ok, reason = available()
    why = reason if not ok else "" if boinc_executable() else "boinc-client is not installed"
    if why:
        if IN_CI:
            pytest.fail(f"BOINC LAN tests cannot run in CI: {why}", pytrace=False)
        pytest.skip(f"BOINC LAN tests: {why}")


def write_app(app_dir: Path) -> Path:
    """12 tasks: 10 shouting over an app file and writing nested outputs, a fan-in over
    their outputs, one failing."""
    app_dir.mkdir(parents=True)
    (app_dir / "words.txt").write_text("alpha\nbeta\ngamma\n")
    (app_dir / "shout.sh").write_text(
        'mkdir -p out\n{ tr a-z A-Z < words.txt; echo "$MARK"; } > "out/w-$1.txt"\n'
        'echo "shouted $1"\necho "note $1" >&2\n'
    )
    (app_dir / "sum.sh").write_text(
        "mkdir -p stats\ncat out/w-*.txt > all.txt\nls out | wc -l > stats/count.txt\n"
        'echo "summed $(wc -l < all.txt) lines"\n'
    )
    app = {
        "version": 1,
        "name": "boinc12",
        "files": ["words.txt", "shout.sh", "sum.sh"],
        "sweeps": [
            {
                "template": {
                    "id": "w-{i}",
                    "command": ["sh", "shout.sh", "{i}"],
                    "env": {"MARK": "word {i}"},
                    "outputs": ["out/w-{i}.txt"],
                },
                "params": {"i": list(range(1, 11))},
            }
        ],
        "tasks": [
            {"id": "sum", "command": ["sh", "sum.sh"], "after": ["w-*"],
             "outputs": ["all.txt", "stats/count.txt"]},
            {"id": "oops", "command": "echo broken >&2; exit 3", "retries": 0},
        ],
    }  # fmt: skip
    path = app_dir / "app.json"
    path.write_text(json.dumps(app))
    return path


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    _require()
    base = tmp_path_factory.mktemp("boinc-lan")
    lan = VirtualLan(4, base_dir=base / "lan", name="boinclan")
    try:
        lan.start()
        grid = Grid(lan)
        h1, h2, h3, h4 = lan.hosts
        # The owner of h3 runs boinc-client with a project of their own (served from h4).
        owner_project = Project(
            app_id="owners-own",
            key=CodeSignKey.generate(),
            bundle=b"",
            root=base / "owner-project",
            on_result=lambda f: None,
            address=h4.address,
            listen_socket=netns_socket_factory(h4.netns)(),
        ).start()
        owner = BoincClient(
            base / "owner-client",
            gui_rpc_port=OWNER_RPC_PORT,
            ncpus=1,
            network_test_url=owner_project.master_url,
            launcher=h3.popen,
            socket_factory=netns_socket_factory(h3.netns),
        )
        try:
            owner.start()
            owner.attach(owner_project.master_url, owner_project.authenticator, "owner")
            for h in (h1, h2):
                grid.join(h, "--slots", "1")
            env = grid.env(h3, {DIR_ENV: str(owner.data_dir), PORT_ENV: str(OWNER_RPC_PORT)})
            with open(h3.home / "join.log", "ab") as log:
                grid.daemons[h3.name] = h3.popen(
                    [*CLI, "join", "--slots", "1"], env=env, stdout=log, stderr=log
                )
            for h in (h1, h2, h3):
                grid.wait_daemon(h)
            grid.wait_idle(h1, [h1, h2, h3])
            yield Bed(lan, grid, [h1, h2, h3], h4, owner, owner_project,
                      write_app(base / "app"), {})  # fmt: skip
        finally:
            owner.stop()
            owner_project.stop()
    finally:
        lan.close()


def submit(bed: Bed, app_json: Path, out: Path, *args: str) -> subprocess.Popen[bytes]:
    return bed.grid.popen_cli(
        bed.submitter, "submit", str(app_json), "--output", str(out), "--json", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(proc: subprocess.Popen[bytes], timeout: float = SUBMIT_TIMEOUT) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"submit did not end in {timeout} s: {err.decode(errors='replace')[-3000:]}")
    return proc.returncode, err.decode(errors="replace")


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (results.json aside), by relative path."""
    return {
        str(p.relative_to(root)): p.read_text(errors="replace")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "results.json"
    }


_BY_NATURE = ("seconds", "worker", "started", "ended")
"""Task fields that differ between two runs by nature: timings and workers."""


def comparable(results: dict[str, Any]) -> list[dict[str, Any]]:
    """results.json tasks without what may differ between backends: timings, workers."""
    return sorted(({k: v for k, v in t.items() if k not in _BY_NATURE}
                   for t in results["tasks"]), key=lambda t: t["id"])  # fmt: skip


def client_log_times(log: Path, app: str) -> tuple[float, float]:
    """(first line about the app's project, first "Starting task" of it) in a client's log
    (1 s resolution)."""
    times: list[tuple[float, str]] = []
    for line in log.read_text(errors="replace").splitlines():
        if f"[bjgrid {app}]" in line:
            stamp = datetime.strptime(line[:20], "%d-%b-%Y %H:%M:%S").timestamp()
            times.append((stamp, line))
    started = next(t for t, line in times if "Starting task" in line)
    return times[0][0], started


def boinc_pids(host: Host) -> list[int]:
    out = []
    for pid in host.pids():
        with contextlib.suppress(OSError):
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if exe.endswith(b"boinc"):
                out.append(pid)
    return out


def test_twelve_tasks_give_the_same_outputs_as_embedded_and_volunteers_detach(
    bed: Bed, tmp_path: Path
) -> None:
    app_json = bed.app_json
    t0 = time.monotonic()
    code, err = finish(submit(bed, app_json, tmp_path / "embedded", "--backend", "embedded"))
    embedded_s = time.monotonic() - t0
    assert code == 1, err[-3000:]  # "oops" fails on purpose
    bed.grid.wait_idle(bed.volunteers[0], bed.volunteers)

    t0 = time.monotonic()
    code, err = finish(submit(bed, app_json, tmp_path / "boinc", "--backend", "boinc"))
    boinc_s = time.monotonic() - t0
    assert code == 1, err[-3000:]
    bed.figures.update(embedded_makespan_s=embedded_s, boinc_makespan_s=boinc_s)
    print(f"\n12-task app: embedded {embedded_s:.1f} s, boinc {boinc_s:.1f} s "
          f"({boinc_s / embedded_s:.1f}x)")  # fmt: skip

    e_res = json.loads((tmp_path / "embedded" / "results.json").read_text())
    b_res = json.loads((tmp_path / "boinc" / "results.json").read_text())
    first, started = client_log_times(bed.owner_client.log_path, b_res["app"])
    print(f"h3 (owner's client): first line about the project -> first task started "
          f"{started - first:.0f} s")  # fmt: skip
    assert comparable(b_res) == comparable(e_res)
    assert {t["worker"] for t in b_res["tasks"] if t["state"] == "done"} <= {
        h.name for h in bed.volunteers
    }
    files = tree(tmp_path / "boinc")
    assert files == tree(tmp_path / "embedded")
    assert files["w-3/out/w-3.txt"] == "ALPHA\nBETA\nGAMMA\nword 3\n"
    assert files["w-3/stderr"] == "note 3\n"
    assert files["sum/stats/count.txt"] == "10\n" and files["sum/stdout"] == "summed 40 lines\n"
    assert files["oops/stderr"] == "broken\n"

    # Volunteers idle, bjgrid's own clients gone with their files, the owner's client
    # detached from the app's project and still attached to its own.
    bed.grid.wait_idle(bed.volunteers[0], bed.volunteers)
    for h in bed.volunteers[:2]:
        assert boinc_pids(h) == []
    assert bed.owner_client.project_urls() == [bed.owner_project.master_url]
    assert bed.owner_client.proc is not None and bed.owner_client.proc.poll() is None


def test_a_tampered_executable_fails_its_task_with_the_clients_reason(
    bed: Bed, tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "app.json").write_text(
        json.dumps({"version": 1, "name": "tampered", "workers": 1,
                    "tasks": [{"id": "t", "command": "echo ran", "retries": 0}]})
    )  # fmt: skip
    home = bed.submitter.home
    before = set(home.rglob("bjg_wrapper_*.py"))
    stop = threading.Event()
    tampered: list[Path] = []

    def tamper() -> None:  # flip one byte of the served executable, size unchanged
        while not stop.is_set() and not tampered:
            for p in set(home.rglob("bjg_wrapper_*.py")) - before:
                data = bytearray(p.read_bytes())
                data[-2] = ord("#") if data[-2] != ord("#") else ord(" ")
                p.write_bytes(bytes(data))
                tampered.append(p)
            stop.wait(0.02)

    thread = threading.Thread(target=tamper, daemon=True)
    thread.start()
    try:
        code, err = finish(
            submit(bed, app_dir / "app.json", tmp_path / "out", "--backend", "boinc")
        )
    finally:
        stop.set()
        thread.join(5)
    assert tampered, "the coordinator never served the wrapper"
    assert code == 1, err[-3000:]
    (task,) = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]
    assert (task["state"], task["exit_code"]) == ("failed", None)
    stderr = (tmp_path / "out" / "t" / "stderr").read_text()
    assert "RSA key check failed" in stderr or "signature" in stderr, stderr
    assert "ran" not in (tmp_path / "out" / "t" / "stdout").read_text()
    bed.grid.wait_idle(bed.volunteers[0], bed.volunteers)


def test_a_volunteer_killed_mid_task_has_its_result_reissued_and_the_app_completes(
    bed: Bed, tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    tasks = [{"id": f"s-{i}", "command": f"sleep 6; echo done {i} > r.txt", "outputs": ["r.txt"],
              "retries": 0} for i in range(1, 5)]  # fmt: skip
    (app_dir / "app.json").write_text(
        json.dumps({"version": 1, "name": "killed", "workers": 3, "tasks": tasks})
    )
    proc = submit(bed, app_dir / "app.json", tmp_path / "out", "--backend", "boinc")
    deadline = time.monotonic() + 90
    victim: Host | None = None
    while victim is None:  # h1 or h2 (bjgrid-started clients), once a task runs there
        assert proc.poll() is None and time.monotonic() < deadline, "no task reached h1/h2"
        victim = next((h for h in bed.volunteers[:2]
                       if any(b"sleep" in _cmd(p) for p in h.pids())), None)  # fmt: skip
        time.sleep(0.1)
    victim.kill9()
    killed = time.monotonic()
    code, err = finish(proc)
    assert code == 0, err[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(t["state"] == "done" and t["attempts"] == 1 for t in results["tasks"]), results
    assert victim.name not in {t["worker"] for t in results["tasks"]}
    for i in range(1, 5):
        assert (tmp_path / "out" / f"s-{i}" / "r.txt").read_text() == f"done {i}\n"
    print(f"\nkilled {victim.name} mid-task; app completed {time.monotonic() - killed:.1f} s later")


def _cmd(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- coordinator failover (issue 6 "Failover") ----------------------------------------------

FAILOVER_TASKS = 9
FAILOVER_TIMEOUT = 120.0
SIGNATURE_REFUSALS = ("RSA key check failed", "signature", "doesn't validate")


def sweep_app(directory: Path, *, nap: float) -> Path:
    """``FAILOVER_TASKS`` tasks writing i*i to sq.txt after ``nap`` seconds (no output
    depends on ``nap``)."""
    directory.mkdir(parents=True)
    app = {
        "version": 1,
        "name": "boinc-failover",
        "workers": 3,
        "sweeps": [
            {
                "template": {
                    "id": "t-{i}",
                    "command": f"sleep {nap}; echo $(( {{i}} * {{i}} )) > sq.txt; echo sq {{i}}",
                    "outputs": ["sq.txt"],
                    "retries": 0,
                },
                "params": {"i": list(range(1, FAILOVER_TASKS + 1))},
            }
        ],
    }
    path = directory / "app.json"
    path.write_text(json.dumps(app))
    return path


def _tag(xml: str, tag: str) -> str:
    m = re.search(f"<{tag}>(.*?)</{tag}>", xml, re.S)
    return "" if m is None else m.group(1).strip()


class ClientWatch:
    """Samples, every ``period``, what the volunteers' boinc clients keep on disk: each
    project (master URL -> the code-signing key the client stored for it, from
    client_state.xml) and the clients' logs (bjgrid-started clients delete theirs at the
    end)."""

    def __init__(self, dirs: Callable[[], list[Path]], period: float = 0.5) -> None:
        self._dirs = dirs
        self._period = period
        self.keys: dict[str, set[str]] = {}
        self.logs: dict[Path, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="client watch")

    def __enter__(self) -> ClientWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for d in self._dirs():
                with contextlib.suppress(OSError):
                    state = (d / "client_state.xml").read_text(errors="replace")
                    for block in re.findall(r"<project>(.*?)</project>", state, re.S):
                        url = _tag(block, "master_url")
                        key = _tag(block, "code_sign_key")
                        self.keys.setdefault(url, set()).update([key] if key else [])
                with contextlib.suppress(OSError):
                    self.logs[d] = (d / "client.log").read_text(errors="replace")
            self._stop.wait(self._period)


def test_coordinator_kill9_with_one_replica_completes_every_result_once(
    bed: Bed, tmp_path: Path
) -> None:
    grid, (h1, h2, h3), h4 = bed.grid, bed.volunteers, bed.submitter
    for h in (h1, h2):  # a volunteer an earlier test killed joins again
        if grid.daemons[h.name].poll() is not None:
            grid.join(h, "--slots", "1")
    grid.wait_idle(h3, bed.volunteers, timeout=60)
    r = grid.cli(
        h4, "submit", str(sweep_app(tmp_path / "ref", nap=0)), "--backend", "embedded",
        "--output", str(tmp_path / "embedded"), timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    grid.wait_idle(h1, bed.volunteers)

    def client_dirs() -> list[Path]:
        found = [p.parent for h in (h1, h2) for p in h.home.rglob("client_state.xml")]
        return [*found, bed.owner_client.data_dir]

    earlier = set(journal_apps(h4))
    t0 = time.monotonic()
    with ClientWatch(client_dirs) as watch:
        proc = submit(bed, sweep_app(tmp_path / "app", nap=2), tmp_path / "never",
                      "--backend", "boinc", "--replicas", "1")  # fmt: skip
        app = ""
        deadline = t0 + FAILOVER_TIMEOUT
        done_before = 0
        while time.monotonic() < deadline and proc.poll() is None:
            app = app or next(iter(set(journal_apps(h4)) - earlier), "")
            entries = journal_rows(h4, app)[1] if app else []
            done_before = sum(1 for e in entries if e["k"] == "finish" and e["exit_code"] == 0)
            if done_before >= 2:
                break
            time.sleep(0.1)
        h4.kill9()  # the coordinator's host: submit, its daemon, the BOINC project
        killed = time.monotonic()
        assert app, "the submit never journaled its app"
        assert 2 <= done_before < FAILOVER_TASKS, f"kill landed outside the run: {done_before}"

        final: tuple[Host, dict[str, Any], list[dict[str, Any]]] | None = None
        while final is None and time.monotonic() < killed + FAILOVER_TIMEOUT:
            for h in bed.volunteers:
                row, entries = journal_rows(h, app)
                if row is not None and row["role"] == "finished":
                    final = (h, row, entries)
            time.sleep(0.5)
        assert final is not None, "no volunteer finished the app as its new coordinator"
        done_s = time.monotonic() - killed
    coord, row, entries = final
    print(f"\n{done_before} results committed before the kill ({killed - t0:.1f} s after "
          f"submit); {coord.name} finished the app {done_s:.1f} s after the kill")  # fmt: skip

    # The final coordinator: term 2, one accepted Finished per task, all of exit 0.
    assert row["term"] == 2, row
    finishes = [e for e in entries if e["k"] == "finish"]
    per_task = Counter(e["task"] for e in finishes)
    assert len(per_task) == FAILOVER_TASKS and set(per_task.values()) == {1}, per_task
    assert all(e["exit_code"] == 0 for e in finishes), finishes
    by_term = Counter(e["term"] for e in finishes)
    assert by_term[2] >= 1, by_term  # unfinished results were reissued at the new project

    # `bjgrid results` from a host that neither coordinated it: every task once, the embedded
    # outputs.
    other = next(h for h in bed.volunteers if h is not coord)
    r = grid.cli(other, "results", app, "--output", str(tmp_path / "out"), timeout=90)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    ids = Counter(t["id"] for t in results["tasks"])
    assert len(ids) == FAILOVER_TASKS and set(ids.values()) == {1}, ids
    assert all(t["state"] == "done" for t in results["tasks"]), results["tasks"]
    assert tree(tmp_path / "out") == tree(tmp_path / "embedded")

    # The project moved to the new coordinator's address, signed with the app's one key.
    (state,) = {e["data"]["code_sign_key"] for e in entries if e["k"] == "backend_state"}
    public = CodeSignKey.from_json(state).public_text.strip()
    urls = {u: keys for u, keys in watch.keys.items() if f"/bjg/{app}/" in u}
    old = [u for u in urls if f"//{h4.address}:" in u]
    new = [u for u in urls if f"//{coord.address}:" in u]
    assert old and new, f"projects the clients attached to: {sorted(urls)}"
    assert set().union(*urls.values()) == {public}, urls
    lines = [ln for text in watch.logs.values() for ln in text.splitlines() if app in ln]
    refusals = [ln for ln in lines if any(s in ln for s in SIGNATURE_REFUSALS)]
    assert refusals == [], refusals

    # Afterwards: the volunteers idle, no bjgrid-started client left, the owner's client back
    # to its own project only.
    grid.wait_idle(other, bed.volunteers, timeout=60)
    for h in (h1, h2):
        assert boinc_pids(h) == [], h.name
    assert boinc_pids(h3) == [bed.owner_client.pid]
    assert bed.owner_client.project_urls() == [bed.owner_project.master_url]
    workers = Counter(t["worker"] for t in results["tasks"])
    print(f"committed by term: {dict(by_term)}; ran on: {dict(workers)}; projects: {sorted(urls)}")
